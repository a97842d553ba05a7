//! The one place where failures become Kubernetes `Status` responses.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use crate::registry::Resource;

/// A failed request, as upstream reports it: HTTP code, `reason`, `message` and `details`.
#[derive(Debug, Clone)]
pub struct ApiError {
    pub code: u16,
    pub reason: &'static str,
    pub message: String,
    pub details: Option<Value>,
}

/// One field error of an Invalid response.
pub struct Cause {
    /// "FieldValueInvalid", "FieldValueRequired", ...
    pub reason: &'static str,
    pub field: String,
    pub message: String,
}

fn details(resource: &Resource, name: &str) -> Value {
    let mut d = json!({ "name": name, "kind": resource.plural });
    if !resource.group.is_empty() {
        d["group"] = json!(resource.group);
    }
    d
}

impl ApiError {
    fn new(code: u16, reason: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            code,
            reason,
            message: message.into(),
            details: None,
        }
    }

    pub fn not_found(resource: &Resource, name: &str) -> Self {
        ApiError {
            details: Some(details(resource, name)),
            ..Self::new(
                404,
                "NotFound",
                format!("{} \"{name}\" not found", resource.qualified_plural()),
            )
        }
    }

    pub fn namespace_not_found(name: &str) -> Self {
        ApiError {
            details: Some(json!({ "name": name, "kind": "namespaces" })),
            ..Self::new(404, "NotFound", format!("namespaces \"{name}\" not found"))
        }
    }

    pub fn already_exists(resource: &Resource, name: &str) -> Self {
        ApiError {
            details: Some(details(resource, name)),
            ..Self::new(
                409,
                "AlreadyExists",
                format!("{} \"{name}\" already exists", resource.qualified_plural()),
            )
        }
    }

    pub fn conflict(resource: &Resource, name: &str) -> Self {
        ApiError {
            details: Some(details(resource, name)),
            ..Self::new(
                409,
                "Conflict",
                format!(
                    "Operation cannot be fulfilled on {} \"{name}\": the object has been modified; please apply your changes to the latest version and try again",
                    resource.qualified_plural()
                ),
            )
        }
    }

    /// 422 with field causes; the message lists them as upstream does.
    pub fn invalid(resource: &Resource, name: &str, causes: Vec<Cause>) -> Self {
        Self::invalid_kind(resource.kind, resource.group, name, causes)
    }

    /// 422 for a kind that is not a stored resource (a `Binding`, a `Scale`).
    pub fn invalid_kind(kind: &str, group: &str, name: &str, causes: Vec<Cause>) -> Self {
        let list: Vec<String> = causes
            .iter()
            .map(|c| format!("{}: {}", c.field, c.message))
            .collect();
        // Upstream names the kind qualified by its group: `Deployment.apps`.
        let qualified = if group.is_empty() {
            kind.to_owned()
        } else {
            format!("{kind}.{group}")
        };
        let message = if list.len() == 1 {
            format!("{qualified} \"{name}\" is invalid: {}", list[0])
        } else {
            format!("{qualified} \"{name}\" is invalid: [{}]", list.join(", "))
        };
        let mut d = json!({
            "name": name,
            "kind": kind,
            "causes": causes.iter().map(|c| json!({"reason": c.reason, "message": c.message, "field": c.field})).collect::<Vec<_>>(),
        });
        if !group.is_empty() {
            d["group"] = json!(group);
        }
        if name.is_empty() {
            // Upstream leaves an empty name out (PatchOptions, DeleteOptions).
            d.as_object_mut().expect("object").remove("name");
        }
        ApiError {
            details: Some(d),
            ..Self::new(422, "Invalid", message)
        }
    }

    /// 409 Conflict with a specific cause, e.g. a pod already bound.
    pub fn conflict_with(qualified: &str, name: &str, cause: &str) -> Self {
        ApiError {
            details: Some(qualified_details(qualified, name)),
            ..Self::new(
                409,
                "Conflict",
                format!("Operation cannot be fulfilled on {qualified} \"{name}\": {cause}"),
            )
        }
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(400, "BadRequest", message)
    }

    pub fn unauthorized() -> Self {
        Self::new(401, "Unauthorized", "Unauthorized")
    }

    pub fn method_not_allowed(message: impl Into<String>) -> Self {
        Self::new(405, "MethodNotAllowed", message)
    }

    pub fn unsupported_media_type(accepted: &str) -> Self {
        Self::new(
            415,
            "UnsupportedMediaType",
            format!(
                "the body of the request was in an unknown format - accepted media types include: {accepted}"
            ),
        )
    }

    pub fn too_large() -> Self {
        Self::new(
            413,
            "RequestEntityTooLarge",
            "Request entity too large: limit is 3145728",
        )
    }

    /// 429 with one cause, e.g. an eviction a disruption budget refuses; a `retry_after` above
    /// zero asks clients to retry after that many seconds (and sets `Retry-After`).
    pub fn too_many_requests(
        message: &str,
        retry_after: u32,
        cause_reason: &str,
        cause_message: String,
    ) -> Self {
        let mut d = json!({"causes": [{"reason": cause_reason, "message": cause_message}]});
        if retry_after > 0 {
            d["retryAfterSeconds"] = json!(retry_after);
        }
        ApiError {
            details: Some(d),
            ..Self::new(429, "TooManyRequests", message)
        }
    }

    /// 403 for a request the server refuses on the object's state (`qualified` is
    /// "plural.group", as in `poddisruptionbudget.policy`).
    pub fn forbidden(qualified: &str, name: &str, why: &str) -> Self {
        ApiError {
            details: Some(qualified_details(qualified, name)),
            ..Self::new(
                403,
                "Forbidden",
                format!("{qualified} \"{name}\" is forbidden: {why}"),
            )
        }
    }

    /// 504 for work the server gave up on; clients may retry after `retry_after` seconds.
    pub fn timeout(message: &str, retry_after: u32) -> Self {
        ApiError {
            details: Some(json!({"retryAfterSeconds": retry_after})),
            ..Self::new(504, "Timeout", format!("Timeout: {message}"))
        }
    }

    /// 410 for a resourceVersion older than the compacted history.
    pub fn gone(message: impl Into<String>) -> Self {
        Self::new(410, "Expired", message)
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(
            500,
            "InternalError",
            format!("Internal error occurred: {}", message.into()),
        )
    }

    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(503, "ServiceUnavailable", message)
    }

    /// The `Status` object.
    pub fn to_status(&self) -> Value {
        let mut s = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        });
        if self.reason.is_empty() {
            s.as_object_mut().expect("object").remove("reason");
        }
        if let Some(d) = &self.details {
            s["details"] = d.clone();
        }
        s
    }
}

/// `Status.details` for an object named by "plural.group" (or a core "plural").
fn qualified_details(qualified: &str, name: &str) -> Value {
    let (kind, group) = qualified.split_once('.').unwrap_or((qualified, ""));
    let mut d = json!({ "name": name, "kind": kind });
    if !group.is_empty() {
        d["group"] = json!(group);
    }
    d
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let code = StatusCode::from_u16(self.code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let retry_after = self
            .details
            .as_ref()
            .and_then(|d| d.get("retryAfterSeconds"))
            .and_then(Value::as_u64)
            .filter(|s| *s > 0);
        let mut response = (
            code,
            [(axum::http::header::CONTENT_TYPE, "application/json")],
            self.to_status().to_string(),
        )
            .into_response();
        if let Some(s) = retry_after {
            response.headers_mut().insert(
                axum::http::header::RETRY_AFTER,
                axum::http::HeaderValue::from(s),
            );
        }
        response
    }
}

/// Store failures classified once: a compacted revision is 410, an unreachable store 503,
/// anything else a 500 whose details stay in the server log.
impl From<dao_store::Error> for ApiError {
    fn from(e: dao_store::Error) -> Self {
        match e {
            dao_store::Error::Compacted { requested, .. } => {
                ApiError::gone(format!("too old resource version: {requested}"))
            }
            dao_store::Error::FutureRevision { requested, .. } => ApiError::new(
                504,
                "Timeout",
                format!("Too large resource version: {requested}"),
            ),
            dao_store::Error::ValueTooLarge { .. } => ApiError::too_large(),
            // Shutting down: the request raced the store's close; the client retries elsewhere.
            dao_store::Error::Closed => {
                tracing::debug!("request after the store closed");
                ApiError::unavailable("the server is shutting down; retry later")
            }
            dao_store::Error::Unavailable(_) => {
                tracing::warn!(error = %e, "store unavailable");
                ApiError::unavailable("the storage backend is unavailable; retry later")
            }
            other => {
                tracing::error!(error = %other, "store error");
                ApiError::internal("storage error")
            }
        }
    }
}
