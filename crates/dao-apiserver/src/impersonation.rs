//! User impersonation (`kubectl --as`, `--as-group`, `--as-uid`): the `Impersonate-User`,
//! `Impersonate-Group`, `Impersonate-Uid` and `Impersonate-Extra-{key}` headers replace the
//! authenticated identity for the rest of the request, once RBAC allows the requester the
//! `impersonate` verb on each thing asked for, as upstream checks it:
//!
//! - a user: `users` (core group) named after the user; a service account
//!   (`system:serviceaccount:NS:NAME`): `serviceaccounts` named NAME in NS;
//! - each group: `groups`; the uid: `uids` in `authentication.k8s.io`;
//! - each extra value: `userextras/{key}` in `authentication.k8s.io`, named by the value.
//!
//! The impersonated identity is exactly what the headers say, plus `system:authenticated`
//! (and a service account's own groups when no group is given), never the requester's.

use axum::http::HeaderMap;

use crate::Identity;
use crate::auth;
use crate::rbac::{self, Attributes, ResourceAttributes};
use crate::status::ApiError;

const USER: &str = "impersonate-user";
const GROUP: &str = "impersonate-group";
const UID: &str = "impersonate-uid";
const EXTRA_PREFIX: &str = "impersonate-extra-";

/// What the headers ask to act as; `None` when they ask for nothing.
#[derive(Debug, Default, PartialEq)]
struct Request {
    user: String,
    groups: Vec<String>,
    uid: Option<String>,
    extra: std::collections::BTreeMap<String, Vec<String>>,
}

/// The impersonation headers of a request, or upstream's error for groups, extras or a uid
/// asked for without a user.
fn requested(headers: &HeaderMap) -> Result<Option<Request>, ApiError> {
    let text = |v: &axum::http::HeaderValue| String::from_utf8_lossy(v.as_bytes()).into_owned();
    let mut asked = Request::default();
    let mut any = false;
    for (name, value) in headers {
        let name = name.as_str();
        if name == USER {
            asked.user = text(value);
        } else if name == GROUP {
            asked.groups.push(text(value));
        } else if name == UID {
            asked.uid = Some(text(value));
        } else if let Some(key) = name.strip_prefix(EXTRA_PREFIX) {
            // Keys travel percent-encoded (header names cannot hold `/`), lower case.
            let key = percent_decode(key);
            asked.extra.entry(key).or_default().push(text(value));
        } else {
            continue;
        }
        any = true;
    }
    if !any {
        return Ok(None);
    }
    if asked.user.is_empty() {
        let what = if !asked.groups.is_empty() {
            format!("groups {:?}", asked.groups)
        } else if asked.uid.is_some() {
            "a uid".to_owned()
        } else {
            "user extras".to_owned()
        };
        return Err(ApiError::internal(format!(
            "requested {what} without impersonating a user"
        )));
    }
    Ok(Some(asked))
}

fn percent_decode(s: &str) -> String {
    percent_encoding::percent_decode_str(s)
        .decode_utf8_lossy()
        .into_owned()
}

/// The checks one impersonation request needs: one `impersonate` per user, group, uid and
/// extra value.
fn checks(asked: &Request) -> Vec<ResourceAttributes> {
    let attrs = |group: &str, resource: &str, subresource: &str, namespace: &str, name: &str| {
        ResourceAttributes {
            group: group.into(),
            resource: resource.into(),
            subresource: subresource.into(),
            namespace: namespace.into(),
            name: name.into(),
        }
    };
    let mut out = Vec::new();
    match service_account(&asked.user) {
        Some((ns, name)) => out.push(attrs("", "serviceaccounts", "", ns, name)),
        None => out.push(attrs("", "users", "", "", &asked.user)),
    }
    for g in &asked.groups {
        out.push(attrs("", "groups", "", "", g));
    }
    for (key, values) in &asked.extra {
        for v in values {
            out.push(attrs("authentication.k8s.io", "userextras", key, "", v));
        }
    }
    if let Some(uid) = &asked.uid {
        out.push(attrs("authentication.k8s.io", "uids", "", "", uid));
    }
    out
}

/// `system:serviceaccount:NS:NAME` split into its namespace and name.
fn service_account(user: &str) -> Option<(&str, &str)> {
    let rest = user.strip_prefix("system:serviceaccount:")?;
    let (ns, name) = rest.split_once(':')?;
    (!ns.is_empty() && !name.is_empty() && !name.contains(':')).then_some((ns, name))
}

/// The identity a request acts as: `requester`'s own when it carries no impersonation
/// headers, the impersonated one when RBAC lets `requester` impersonate everything asked for;
/// upstream's 403 (naming the first thing refused) otherwise.
pub fn resolve(
    rbac: &rbac::RbacIndex,
    requester: &Identity,
    headers: &HeaderMap,
) -> Result<Option<Identity>, ApiError> {
    let Some(asked) = requested(headers)? else {
        return Ok(None);
    };
    for resource in checks(&asked) {
        let a = Attributes {
            verb: "impersonate".into(),
            resource: Some(resource),
            path: String::new(),
        };
        if !rbac::authorize(rbac, requester, &a).allowed {
            return Err(rbac::forbidden(requester, &a));
        }
    }
    Ok(Some(acting_as(asked)))
}

/// The identity the (allowed) request asks for.
fn acting_as(asked: Request) -> Identity {
    let mut groups = asked.groups;
    if groups.is_empty()
        && let Some((ns, _)) = service_account(&asked.user)
    {
        groups = auth::service_account_groups(ns);
    }
    let marker = if asked.user == "system:anonymous" {
        "system:unauthenticated"
    } else {
        "system:authenticated"
    };
    if !groups.iter().any(|g| g == marker) {
        groups.push(marker.to_owned());
    }
    Identity {
        user: asked.user,
        uid: asked.uid.unwrap_or_default(),
        groups,
        extra: asked.extra,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                axum::http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        h
    }

    #[test]
    fn headers_name_who_to_act_as() {
        assert_eq!(requested(&headers(&[("Accept", "*/*")])).unwrap(), None);
        let asked = requested(&headers(&[
            ("Impersonate-User", "jane"),
            ("Impersonate-Group", "devs"),
            ("Impersonate-Group", "ops"),
            ("Impersonate-Uid", "u-1"),
            ("Impersonate-Extra-acme.com%2Fproject", "blue"),
            ("Impersonate-Extra-Scopes", "view"),
            ("Impersonate-Extra-Scopes", "edit"),
        ]))
        .unwrap()
        .unwrap();
        assert_eq!(asked.user, "jane");
        assert_eq!(asked.groups, ["devs", "ops"]);
        assert_eq!(asked.extra["acme.com/project"], ["blue"]);
        assert_eq!(asked.extra["scopes"], ["view", "edit"]);
        let names: Vec<String> = checks(&asked)
            .iter()
            .map(|a| format!("{}/{}/{}:{}", a.group, a.resource, a.subresource, a.name))
            .collect();
        assert_eq!(
            names,
            [
                "/users/:jane",
                "/groups/:devs",
                "/groups/:ops",
                "authentication.k8s.io/userextras/acme.com/project:blue",
                "authentication.k8s.io/userextras/scopes:view",
                "authentication.k8s.io/userextras/scopes:edit",
                "authentication.k8s.io/uids/:u-1",
            ]
        );
        let who = acting_as(asked);
        assert_eq!(who.groups, ["devs", "ops", "system:authenticated"]);
        assert_eq!(who.uid, "u-1");

        let e = requested(&headers(&[("Impersonate-Group", "devs")])).unwrap_err();
        assert_eq!(e.code, 500);
        assert!(
            e.message.contains("without impersonating a user"),
            "{}",
            e.message
        );
    }

    #[test]
    fn service_accounts_get_their_groups_unless_groups_are_given() {
        let asked = requested(&headers(&[(
            "Impersonate-User",
            "system:serviceaccount:team:builder",
        )]))
        .unwrap()
        .unwrap();
        let check = &checks(&asked)[0];
        assert_eq!(
            (
                check.resource.as_str(),
                check.namespace.as_str(),
                check.name.as_str()
            ),
            ("serviceaccounts", "team", "builder")
        );
        assert_eq!(
            acting_as(asked).groups,
            [
                "system:serviceaccounts",
                "system:serviceaccounts:team",
                "system:authenticated"
            ]
        );
        let anonymous = acting_as(Request {
            user: "system:anonymous".into(),
            ..Request::default()
        });
        assert_eq!(anonymous.groups, ["system:unauthenticated"]);
    }
}
