//! Service account tokens and the identity reviews: `serviceaccounts/{name}/token`
//! (TokenRequest, what `kubectl create token` asks for), bearer-token authentication with those
//! tokens, `selfsubjectreviews` (`kubectl auth whoami`) and `tokenreviews`.
//!
//! Tokens are JWTs signed with ES256 by a key created on first start (`DIR/pki/sa.key`), with
//! upstream's claims (`iss`, `sub` = `system:serviceaccount:NS:NAME`, `aud`, `exp`, `iat`,
//! `nbf`, `jti` and the `kubernetes.io` claim naming the service account and its uid). A token
//! authenticates while it has not expired, names this server's audience, and its service
//! account still exists with the same uid, as upstream's bound tokens do.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::rand::SystemRandom;
use ring::signature::{self, EcdsaKeyPair, KeyPair};
use serde_json::{Value, json};

use crate::Identity;
use crate::api::ApiState;
use crate::registry;
use crate::status::{ApiError, Cause};

/// The OpenID provider configuration of the service account issuer, as served at
/// `/.well-known/openid-configuration` (upstream's fields), with the key set at `jwks_uri`.
pub fn openid_configuration(jwks_uri: &str) -> Value {
    json!({
        "issuer": ISSUER,
        "jwks_uri": jwks_uri,
        "response_types_supported": ["id_token"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["ES256"],
    })
}

/// The issuer and the one audience of this server's tokens: upstream's default.
pub const ISSUER: &str = "https://kubernetes.default.svc.cluster.local";

/// The kinds a token can be bound to (core/v1), as upstream.
const BOUND_KINDS: [&str; 3] = ["Pod", "Secret", "Node"];

/// Upstream's bounds on `spec.expirationSeconds`.
const MIN_EXPIRATION: i64 = 600;
const DEFAULT_EXPIRATION: i64 = 3600;

/// Signs and checks service account tokens.
pub struct TokenSigner {
    key: EcdsaKeyPair,
    kid: String,
    rng: SystemRandom,
    /// Tokens whose signature checked out, by the SHA-256 of their bytes, with what they
    /// claim and their `nbf`. Whether given bytes carry this signer's signature never changes,
    /// so a token presented again is not verified again (ECDSA verification is most of a
    /// token-authenticated request's CPU otherwise); expiry is still checked on every use, and
    /// the service account's existence by the caller. Forgeries are never remembered.
    verified: Mutex<HashMap<[u8; 32], (TokenClaims, i64)>>,
}

/// Verified tokens remembered at most; when full, the memory starts over.
const VERIFIED_TOKENS: usize = 4096;

/// What a valid token says.
#[derive(Debug, Clone, PartialEq)]
pub struct TokenClaims {
    pub namespace: String,
    pub name: String,
    pub uid: String,
    pub audiences: Vec<String>,
    pub expires: i64,
    pub jti: String,
    /// The object the token is bound to (`kind`, `name`, `uid`): the token authenticates only
    /// while that object exists.
    pub bound: Option<(String, String, String)>,
}

impl TokenClaims {
    /// The service account's user name, as upstream writes it.
    pub fn username(&self) -> String {
        service_account_user(&self.namespace, &self.name)
    }

    /// The user a token authenticates as: the service account (its uid too), its groups, and
    /// upstream's extras naming the credential and the object it is bound to.
    pub fn identity(&self) -> Identity {
        let mut extra = std::collections::BTreeMap::new();
        if !self.jti.is_empty() {
            extra.insert(
                "authentication.kubernetes.io/credential-id".to_owned(),
                vec![format!("JTI={}", self.jti)],
            );
        }
        if let Some((kind, name, uid)) = &self.bound {
            let prefix = match kind.as_str() {
                "Pod" => Some("pod"),
                "Node" => Some("node"),
                _ => None,
            };
            if let Some(p) = prefix {
                extra.insert(
                    format!("authentication.kubernetes.io/{p}-name"),
                    vec![name.clone()],
                );
                extra.insert(
                    format!("authentication.kubernetes.io/{p}-uid"),
                    vec![uid.clone()],
                );
            }
        }
        Identity {
            user: self.username(),
            uid: self.uid.clone(),
            groups: service_account_groups(&self.namespace),
            extra,
        }
    }
}

/// The groups of every service account in `namespace`, as upstream lists them.
pub fn service_account_groups(namespace: &str) -> Vec<String> {
    vec![
        "system:serviceaccounts".into(),
        format!("system:serviceaccounts:{namespace}"),
        "system:authenticated".into(),
    ]
}

/// A service account's user name: `system:serviceaccount:NS:NAME`.
pub fn service_account_user(namespace: &str, name: &str) -> String {
    format!("system:serviceaccount:{namespace}:{name}")
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

impl TokenSigner {
    /// From a PKCS#8 ECDSA P-256 key (the DER bytes of `DIR/pki/sa.key`).
    pub fn from_pkcs8(der: &[u8]) -> Result<Self, String> {
        let rng = SystemRandom::new();
        let key = EcdsaKeyPair::from_pkcs8(&signature::ECDSA_P256_SHA256_FIXED_SIGNING, der, &rng)
            .map_err(|e| format!("service account key: {e}"))?;
        let digest = ring::digest::digest(&ring::digest::SHA256, key.public_key().as_ref());
        let kid = URL_SAFE_NO_PAD.encode(digest.as_ref());
        Ok(TokenSigner {
            key,
            kid,
            rng,
            verified: Mutex::default(),
        })
    }

    /// The JSON Web Key Set with the public key that checks this signer's tokens, as served
    /// at `/openid/v1/jwks` for service account issuer discovery.
    pub fn jwks(&self) -> Value {
        // The public key is the uncompressed point: 0x04, then x and y, 32 bytes each.
        let point = self.key.public_key().as_ref();
        let (x, y) = point[1..].split_at(32);
        json!({"keys": [{
            "use": "sig",
            "kty": "EC",
            "kid": self.kid,
            "crv": "P-256",
            "alg": "ES256",
            "x": URL_SAFE_NO_PAD.encode(x),
            "y": URL_SAFE_NO_PAD.encode(y),
        }]})
    }

    /// A signed token for the service account, valid for `seconds` from now.
    pub fn issue(
        &self,
        namespace: &str,
        name: &str,
        uid: &str,
        audiences: &[String],
        seconds: i64,
        bound: Option<(&str, &str, &str)>,
    ) -> (String, i64) {
        let iat = now();
        let exp = iat + seconds;
        let header = json!({"alg": "ES256", "kid": self.kid, "typ": "JWT"});
        let claims = json!({
            "aud": audiences,
            "exp": exp,
            "iat": iat,
            "iss": ISSUER,
            "jti": uuid::Uuid::new_v4().to_string(),
            "kubernetes.io": {
                "namespace": namespace,
                "serviceaccount": {"name": name, "uid": uid},
            },
            "nbf": iat,
            "sub": service_account_user(namespace, name),
        });
        let mut claims = claims;
        if let Some((kind, name, uid)) = bound {
            claims["kubernetes.io"][kind.to_ascii_lowercase()] = json!({"name": name, "uid": uid});
        }
        let mut token = URL_SAFE_NO_PAD.encode(header.to_string());
        token.push('.');
        token.push_str(&URL_SAFE_NO_PAD.encode(claims.to_string()));
        let sig = self
            .key
            .sign(&self.rng, token.as_bytes())
            .expect("ECDSA signing works");
        token.push('.');
        token.push_str(&URL_SAFE_NO_PAD.encode(sig.as_ref()));
        (token, exp)
    }

    /// The claims of a token this signer made that has not expired; `None` for anything else
    /// (another issuer's token, a forged or altered one, an expired one). The service
    /// account's existence is the caller's to check.
    pub fn verify(&self, token: &str) -> Option<TokenClaims> {
        let digest = ring::digest::digest(&ring::digest::SHA256, token.as_bytes());
        let id: [u8; 32] = digest.as_ref().try_into().expect("SHA-256 is 32 bytes");
        let known = self.remembered().get(&id).cloned();
        let (claims, nbf) = match known {
            Some(known) => known,
            None => {
                let signed = self.verify_signature(token)?;
                let mut verified = self.remembered();
                if verified.len() >= VERIFIED_TOKENS {
                    verified.clear();
                }
                verified.insert(id, signed.clone());
                signed
            }
        };
        let t = now();
        (claims.expires > t && nbf <= t + 60).then_some(claims)
    }

    fn remembered(&self) -> std::sync::MutexGuard<'_, HashMap<[u8; 32], (TokenClaims, i64)>> {
        self.verified.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The claims (and `nbf`) of a token with this signer's signature and issuer, whatever
    /// the time.
    fn verify_signature(&self, token: &str) -> Option<(TokenClaims, i64)> {
        let mut parts = token.split('.');
        let (header, claims, sig) = (parts.next()?, parts.next()?, parts.next()?);
        if parts.next().is_some() {
            return None;
        }
        let sig = URL_SAFE_NO_PAD.decode(sig).ok()?;
        let signed = &token[..header.len() + 1 + claims.len()];
        signature::UnparsedPublicKey::new(
            &signature::ECDSA_P256_SHA256_FIXED,
            self.key.public_key().as_ref(),
        )
        .verify(signed.as_bytes(), &sig)
        .ok()?;
        let header: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(header).ok()?).ok()?;
        if header["alg"] != "ES256" {
            return None;
        }
        let c: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(claims).ok()?).ok()?;
        if c["iss"] != ISSUER {
            return None;
        }
        let nbf = c["nbf"].as_i64()?;
        let audiences = match &c["aud"] {
            Value::String(a) => vec![a.clone()],
            aud @ Value::Array(_) => crate::api::strings(aud),
            _ => return None,
        };
        let sa = &c["kubernetes.io"]["serviceaccount"];
        let bound = BOUND_KINDS.iter().find_map(|kind| {
            let o = &c["kubernetes.io"][kind.to_ascii_lowercase()];
            Some((
                kind.to_string(),
                o["name"].as_str()?.to_owned(),
                o["uid"].as_str()?.to_owned(),
            ))
        });
        let claims = TokenClaims {
            bound,
            namespace: c["kubernetes.io"]["namespace"].as_str()?.to_owned(),
            name: sa["name"].as_str()?.to_owned(),
            uid: sa["uid"].as_str()?.to_owned(),
            audiences,
            expires: c["exp"].as_i64()?,
            jti: c["jti"].as_str().unwrap_or("").to_owned(),
        };
        Some((claims, nbf))
    }
}

/// The service account a token names, if it still exists with the uid the token was issued
/// for and is not being deleted.
async fn service_account_alive(state: &ApiState, claims: &TokenClaims) -> bool {
    let res = registry::find("", "v1", "serviceaccounts").expect("serviceaccounts registered");
    let alive = |object: Option<Value>, uid: &str| {
        object.is_some_and(|o| {
            o["metadata"]["uid"] == uid && o["metadata"]["deletionTimestamp"].is_null()
        })
    };
    let sa = stored(state, res, &claims.namespace, &claims.name).await;
    if !alive(sa.ok().flatten(), &claims.uid) {
        return false;
    }
    match &claims.bound {
        None => true,
        Some((kind, name, uid)) => alive(
            stored(state, bound_resource(kind), &claims.namespace, name)
                .await
                .ok()
                .flatten(),
            uid,
        ),
    }
}

/// The core/v1 resource of a kind a token may be bound to (Pod, Secret or Node).
fn bound_resource(kind: &str) -> &'static registry::Resource {
    let plural = match kind {
        "Pod" => "pods",
        "Secret" => "secrets",
        _ => "nodes",
    };
    registry::find("", "v1", plural).expect("core kinds registered")
}

/// The stored object `name` of `res` (in `namespace` when namespaced), if it exists.
async fn stored(
    state: &ApiState,
    res: &registry::Resource,
    namespace: &str,
    name: &str,
) -> Result<Option<Value>, ApiError> {
    let (kv, _) = state
        .store
        .get(&res.key(Some(namespace), name), None)
        .await?;
    kv.map(|kv| crate::api::decode(&kv)).transpose()
}

/// Who a bearer token (not the admin token) authenticates as: a live service account's token
/// for this server's audience.
pub async fn authenticate(state: &ApiState, token: &str) -> Option<Identity> {
    let claims = state.tokens.as_ref()?.verify(token)?;
    if !claims.audiences.iter().any(|a| a == ISSUER) {
        return None;
    }
    service_account_alive(state, &claims)
        .await
        .then(|| claims.identity())
}

/// `POST .../namespaces/{ns}/serviceaccounts/{name}/token`: a TokenRequest answered with a
/// signed token (upstream's 201 with the request's spec, defaulted, and `status`).
pub async fn token_request(
    state: &ApiState,
    namespace: &str,
    name: &str,
    body: &Value,
) -> Result<Value, ApiError> {
    let res = registry::find("", "v1", "serviceaccounts").expect("serviceaccounts registered");
    let signer = state
        .tokens
        .as_ref()
        .ok_or_else(|| ApiError::unavailable("service account tokens are not configured"))?;
    if body["kind"] != "TokenRequest" && !body["kind"].is_null() {
        return Err(ApiError::bad_request(format!(
            "the body of a token request must be a TokenRequest, not {}",
            body["kind"]
        )));
    }
    let spec = &body["spec"];
    let seconds = match &spec["expirationSeconds"] {
        Value::Null => DEFAULT_EXPIRATION,
        v => v.as_i64().unwrap_or(-1),
    };
    let mut causes = Vec::new();
    if seconds < MIN_EXPIRATION {
        causes.push(Cause {
            reason: "FieldValueInvalid",
            field: "spec.expirationSeconds".into(),
            message: format!(
                "Invalid value: {seconds}: may not specify a duration less than 10 minutes"
            ),
        });
    } else if seconds > 1 << 32 {
        causes.push(Cause {
            reason: "FieldValueTooLong",
            field: "spec.expirationSeconds".into(),
            message: format!(
                "Invalid value: {seconds}: may not specify a duration larger than 2^32 seconds"
            ),
        });
    }
    let bound_ref = &spec["boundObjectRef"];
    let bound_kind = bound_ref["kind"].as_str().unwrap_or("");
    if !bound_ref.is_null() {
        if !BOUND_KINDS.contains(&bound_kind) {
            causes.push(Cause {
                reason: "FieldValueNotSupported",
                field: "spec.boundObjectRef.kind".into(),
                message: format!(
                    "Unsupported value: \"{bound_kind}\": supported values: \"Pod\", \"Secret\", \"Node\""
                ),
            });
        }
        let api_version = bound_ref["apiVersion"].as_str().unwrap_or("");
        if api_version != "v1" {
            causes.push(Cause {
                reason: "FieldValueInvalid",
                field: "spec.boundObjectRef.apiVersion".into(),
                message: format!("Invalid value: \"{api_version}\": must be v1"),
            });
        }
    }
    if !causes.is_empty() {
        return Err(ApiError::invalid_kind(
            "TokenRequest",
            "authentication.k8s.io",
            name,
            causes,
        ));
    }
    let sa = stored(state, res, namespace, name)
        .await?
        .ok_or_else(|| ApiError::not_found(res, name))?;
    let uid = sa["metadata"]["uid"].as_str().unwrap_or("");
    let mut audiences = crate::api::strings(&spec["audiences"]);
    if audiences.is_empty() {
        audiences.push(ISSUER.to_owned());
    }
    let mut bound = None;
    let mut echoed_ref = Value::Null;
    if !bound_ref.is_null() {
        let object_name = bound_ref["name"].as_str().unwrap_or("");
        let object_res = bound_resource(bound_kind);
        let object = stored(state, object_res, namespace, object_name)
            .await?
            .ok_or_else(|| ApiError::not_found(object_res, object_name))?;
        if bound_kind == "Pod"
            && object["spec"]["serviceAccountName"]
                .as_str()
                .unwrap_or("default")
                != name
        {
            return Err(ApiError::bad_request(format!(
                "cannot bind token for serviceaccount \"{name}\" to pod running with different serviceaccount name."
            )));
        }
        let object_uid = object["metadata"]["uid"].as_str().unwrap_or("").to_owned();
        if let Some(want) = bound_ref["uid"].as_str().filter(|u| !u.is_empty())
            && want != object_uid
        {
            return Err(ApiError::conflict_with(
                bound_kind,
                object_name,
                &format!(
                    "the UID in the bound object reference ({want}) does not match the UID in record. The object might have been deleted and then recreated"
                ),
            ));
        }
        echoed_ref =
            json!({"kind": bound_kind, "apiVersion": "v1", "name": object_name, "uid": object_uid});
        bound = Some((bound_kind.to_owned(), object_name.to_owned(), object_uid));
    }
    let (token, exp) = signer.issue(
        namespace,
        name,
        uid,
        &audiences,
        seconds,
        bound
            .as_ref()
            .map(|(k, n, u)| (k.as_str(), n.as_str(), u.as_str())),
    );
    let expires = chrono::DateTime::from_timestamp(exp, 0)
        .unwrap_or_default()
        .format("%Y-%m-%dT%H:%M:%SZ")
        .to_string();
    Ok(json!({
        "kind": "TokenRequest",
        "apiVersion": "authentication.k8s.io/v1",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "creationTimestamp": crate::managed::now(),
        },
        "spec": {
            "audiences": audiences,
            "expirationSeconds": seconds,
            "boundObjectRef": echoed_ref,
        },
        "status": {"token": token, "expirationTimestamp": expires},
    }))
}

/// The user info object of upstream's reviews (`UserInfo`): `uid` and `extra` only when
/// there are some.
pub fn user_info(identity: &Identity) -> Value {
    let mut info = json!({"username": identity.user, "groups": identity.groups});
    if !identity.uid.is_empty() {
        info["uid"] = json!(identity.uid);
    }
    if !identity.extra.is_empty() {
        info["extra"] = json!(identity.extra);
    }
    info
}

/// `POST /apis/authentication.k8s.io/v1/selfsubjectreviews`: who the caller is.
pub fn self_subject_review(identity: &Identity) -> Value {
    json!({
        "kind": "SelfSubjectReview",
        "apiVersion": "authentication.k8s.io/v1",
        "metadata": {"creationTimestamp": null},
        "status": {"userInfo": user_info(identity)},
    })
}

/// `POST /apis/authentication.k8s.io/v1/tokenreviews`: whether `spec.token` authenticates,
/// and as whom, for the audiences asked about (this server's when none are).
pub async fn token_review(
    state: &ApiState,
    admin_token: &str,
    body: &Value,
) -> Result<Value, ApiError> {
    let token = body["spec"]["token"].as_str().unwrap_or("");
    if token.is_empty() {
        return Err(ApiError::invalid_kind(
            "TokenReview",
            "authentication.k8s.io",
            "",
            vec![Cause {
                reason: "FieldValueRequired",
                field: "spec.token".into(),
                message: "Required value: token must be specified".into(),
            }],
        ));
    }
    let wanted = crate::api::strings(&body["spec"]["audiences"]);
    let mut status = json!({"authenticated": false, "user": {}});
    if crate::constant_time_eq(token.as_bytes(), admin_token.as_bytes()) {
        if wanted.is_empty() || wanted.iter().any(|a| a == ISSUER) {
            status = json!({
                "authenticated": true,
                "user": user_info(&crate::admin_identity()),
                "audiences": [ISSUER],
            });
        }
    } else if let Some(claims) = state.tokens.as_ref().and_then(|s| s.verify(token)) {
        let wanted = if wanted.is_empty() {
            vec![ISSUER.to_owned()]
        } else {
            wanted
        };
        let matched: Vec<&String> = wanted
            .iter()
            .filter(|a| claims.audiences.contains(a))
            .collect();
        if !matched.is_empty() && service_account_alive(state, &claims).await {
            let user = user_info(&claims.identity());
            status = json!({"authenticated": true, "user": user, "audiences": matched});
        }
    }
    if status["authenticated"] == false {
        status["error"] = json!("[invalid bearer token, token lookup failed]");
    }
    let mut review = json!({
        "kind": "TokenReview",
        "apiVersion": "authentication.k8s.io/v1",
        "metadata": {"creationTimestamp": null},
        "spec": body["spec"].clone(),
        "status": status,
    });
    if let Some(spec) = review["spec"].as_object_mut() {
        spec.remove("token");
    }
    Ok(review)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn signer() -> TokenSigner {
        let key = rcgen::KeyPair::generate().unwrap();
        TokenSigner::from_pkcs8(&key.serialize_der()).unwrap()
    }

    #[test]
    fn tokens_verify_only_as_issued() {
        let s = signer();
        let aud = vec![ISSUER.to_owned()];
        let (token, exp) = s.issue("team", "builder", "u-1", &aud, 3600, None);
        let claims = s.verify(&token).expect("a fresh token verifies");
        assert_eq!(
            claims,
            TokenClaims {
                namespace: "team".into(),
                name: "builder".into(),
                uid: "u-1".into(),
                audiences: aud.clone(),
                expires: exp,
                jti: claims.jti.clone(),
                bound: None,
            }
        );
        assert_eq!(claims.username(), "system:serviceaccount:team:builder");
        assert_eq!(
            claims.identity().groups,
            [
                "system:serviceaccounts",
                "system:serviceaccounts:team",
                "system:authenticated"
            ]
        );

        // Another key's token, an altered payload, an expired token, garbage: all refused.
        let (other, _) = signer().issue("team", "builder", "u-1", &aud, 3600, None);
        assert!(s.verify(&other).is_none());
        let mut parts: Vec<String> = token.split('.').map(str::to_owned).collect();
        let mut claims: Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(&parts[1]).unwrap()).unwrap();
        claims["sub"] = json!("system:serviceaccount:kube-system:admin");
        parts[1] = URL_SAFE_NO_PAD.encode(claims.to_string());
        assert!(s.verify(&parts.join(".")).is_none());
        let (expired, _) = s.issue("team", "builder", "u-1", &aud, -1, None);
        let (pod_bound, _) = s.issue(
            "team",
            "builder",
            "u-1",
            &aud,
            600,
            Some(("Pod", "web-0", "p-9")),
        );
        assert_eq!(
            s.verify(&pod_bound).unwrap().bound,
            Some(("Pod".to_owned(), "web-0".to_owned(), "p-9".to_owned()))
        );
        assert!(s.verify(&expired).is_none());
        assert!(
            s.verify(&expired).is_none(),
            "still refused when presented again"
        );
        for junk in ["", "a.b", "a.b.c", "a.b.c.d", &format!("{token}x")] {
            assert!(s.verify(junk).is_none(), "{junk}");
        }

        // Presented again, a token is answered from memory: the same claims, until it
        // expires. Only signatures that checked out are remembered.
        assert_eq!(s.verify(&token), Some(claims_again(&s, &token)));
        assert_eq!(s.remembered().len(), 3, "token, expired, pod_bound");
        for (claims, _) in s.remembered().values_mut() {
            claims.expires = now() - 1;
        }
        assert!(s.verify(&token).is_none(), "expired while remembered");
    }

    fn claims_again(s: &TokenSigner, token: &str) -> TokenClaims {
        s.verify_signature(token).expect("signed by s").0
    }
}
