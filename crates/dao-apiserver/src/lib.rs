//! `dao server`'s HTTP edge: TLS, authentication, discovery and the generic resource
//! handlers over a [`dao_store::Store`].

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use dao_store::Store;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::json;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tower::ServiceExt;
use tracing::{debug, info, warn};

mod api;
mod apply;
mod auth;
mod compress;
mod convert;
mod defaults;
mod discovery;
mod eviction;
mod impersonation;
mod managed;
mod namespaces;
mod openapi;
mod openapi_pb;
pub mod pki;
mod pods;
mod protobuf;
mod rbac;
pub mod registry;
mod selector;
mod services;
mod smp;
mod status;
mod table;
mod typed;
mod validation;

pub use pki::Pki;
use status::ApiError;

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error(transparent)]
    Pki(#[from] pki::PkiError),
    #[error("tls configuration: {0}")]
    Tls(String),
    #[error("service account tokens: {0}")]
    Tokens(String),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("store: {0}")]
    Store(#[from] dao_store::Error),
}

pub struct ServerConfig {
    pub data_dir: PathBuf,
    pub listen: SocketAddr,
    pub store: Arc<dyn Store>,
}

/// A running server. Dropping it does not stop it; call [`RunningServer::shutdown`].
pub struct RunningServer {
    pub local_addr: SocketAddr,
    pub kubeconfig: PathBuf,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
    app: Router,
}

impl RunningServer {
    /// A client of this server's API that skips TLS and the socket: each request goes
    /// straight to the router (authentication, dispatch, the same handlers and answers as
    /// over HTTPS) as `user` in `system:masters`, with `user_agent` naming the writer in
    /// managedFields. For the components `dao server` runs in its own process, the scheduler
    /// and the controllers; everything else connects through the listener. Lists and watch
    /// events through it leave out managedFields, which none of those components reads.
    pub fn local_client(&self, user: &str, user_agent: &str) -> kube::Client {
        let app = self.app.clone();
        let identity = Identity::master(user);
        let agent = header::HeaderValue::from_str(user_agent)
            .unwrap_or_else(|_| header::HeaderValue::from_static("dao"));
        let service = tower::service_fn(move |mut req: Request<kube::client::Body>| {
            req.extensions_mut().insert(identity.clone());
            req.extensions_mut().insert(LocalCaller);
            req.headers_mut()
                .entry(header::USER_AGENT)
                .or_insert_with(|| agent.clone());
            app.clone().oneshot(req)
        });
        kube::Client::new(service, "default")
    }

    /// Stop accepting connections and wait for the accept loop to end.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }
}

/// Marks a request from [`RunningServer::local_client`]: one of Dao's own in-process
/// components, which read lists and watch events without managedFields (`api::Output::Trimmed`).
#[derive(Clone, Copy, Debug)]
pub struct LocalCaller;

/// Who made a request, as established by the TLS client certificate or a bearer token (and
/// then, perhaps, impersonation headers): upstream's `UserInfo`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Identity {
    pub user: String,
    /// Empty when the authenticator knows none (certificates, the admin token).
    pub uid: String,
    pub groups: Vec<String>,
    pub extra: std::collections::BTreeMap<String, Vec<String>>,
}

impl Identity {
    /// A member of `system:masters` (the admin credentials, Dao's in-process components).
    pub(crate) fn master(user: &str) -> Identity {
        Identity {
            user: user.to_owned(),
            groups: vec!["system:masters".into(), "system:authenticated".into()],
            ..Identity::default()
        }
    }
}

#[derive(Clone)]
struct AppState {
    api: Arc<api::ApiState>,
    admin_token: Arc<str>,
    metrics: Arc<Metrics>,
    /// Where issuer discovery says the key set is: this server's own address.
    jwks_uri: Arc<str>,
}

/// Request counters for `/metrics`, in Prometheus' text format.
#[derive(Default)]
struct Metrics {
    requests: std::sync::Mutex<std::collections::BTreeMap<(String, u16), u64>>,
    duration_micros: std::sync::atomic::AtomicU64,
    count: std::sync::atomic::AtomicU64,
}

impl Metrics {
    fn observe(&self, method: &str, code: u16, elapsed: std::time::Duration) {
        use std::sync::atomic::Ordering::Relaxed;
        *self
            .requests
            .lock()
            .unwrap()
            .entry((method.to_owned(), code))
            .or_default() += 1;
        self.duration_micros
            .fetch_add(elapsed.as_micros() as u64, Relaxed);
        self.count.fetch_add(1, Relaxed);
    }

    fn render(&self) -> String {
        use std::fmt::Write;
        use std::sync::atomic::Ordering::Relaxed;
        let mut out = String::new();
        out.push_str("# HELP apiserver_request_total Requests to the Kubernetes API, by verb and HTTP code.\n");
        out.push_str("# TYPE apiserver_request_total counter\n");
        for ((verb, code), n) in self.requests.lock().unwrap().iter() {
            let _ = writeln!(
                out,
                "apiserver_request_total{{verb=\"{verb}\",code=\"{code}\"}} {n}"
            );
        }
        out.push_str("# HELP apiserver_request_duration_seconds Time spent serving Kubernetes API requests.\n");
        out.push_str("# TYPE apiserver_request_duration_seconds summary\n");
        let _ = writeln!(
            out,
            "apiserver_request_duration_seconds_sum {}",
            self.duration_micros.load(Relaxed) as f64 / 1e6
        );
        let _ = writeln!(
            out,
            "apiserver_request_duration_seconds_count {}",
            self.count.load(Relaxed)
        );
        out
    }
}

/// Set up credentials, bind, write the admin kubeconfig, and serve until shut down.
pub async fn start(config: ServerConfig) -> Result<RunningServer, ServerError> {
    let pki = Pki::load_or_create(&config.data_dir.join("pki"))?;
    let listener = TcpListener::bind(config.listen)
        .await
        .map_err(|source| ServerError::Bind {
            addr: config.listen,
            source,
        })?;
    let local_addr = listener.local_addr().map_err(|source| ServerError::Bind {
        addr: config.listen,
        source,
    })?;
    let host = if local_addr.ip().is_unspecified() {
        "127.0.0.1".to_owned()
    } else if local_addr.is_ipv6() {
        format!("[{}]", local_addr.ip())
    } else {
        local_addr.ip().to_string()
    };
    let kubeconfig = config.data_dir.join("admin.kubeconfig");
    pki::write_private(
        &kubeconfig,
        &pki.admin_kubeconfig(&format!("https://{host}:{}", local_addr.port())),
    )
    .map_err(|source| ServerError::Write {
        path: kubeconfig.clone(),
        source,
    })?;
    let initial = [
        namespaces::initial(),
        rbac::bootstrap(),
        pods::system_priority_classes(),
    ]
    .concat();
    api::seed(&*config.store, initial, rbac::reconciled).await?;
    services::bootstrap(&*config.store, local_addr.port()).await?;

    let tls = tls_config(&pki)?;
    let (stop, mut stopped) = watch::channel(false);
    let rbac = rbac::RbacIndex::start(config.store.clone(), stop.subscribe()).await?;
    let state = AppState {
        api: Arc::new(api::ApiState {
            store: config.store.clone(),
            rbac,
            tokens: Some(
                auth::TokenSigner::from_pkcs8(&pki.service_account_key_der()?)
                    .map_err(ServerError::Tokens)?,
            ),
        }),
        admin_token: pki.admin_token.clone().into(),
        metrics: Arc::default(),
        jwks_uri: format!("https://{host}:{}{JWKS_PATH}", local_addr.port()).into(),
    };
    let app = router(state);
    let local_app = app.clone();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls));
    let task = tokio::spawn(async move {
        loop {
            let (tcp, peer) = tokio::select! {
                _ = stopped.changed() => break,
                accepted = listener.accept() => match accepted {
                    Ok(c) => c,
                    Err(e) => {
                        warn!(error = %e, "accept failed");
                        continue;
                    }
                },
            };
            let acceptor = acceptor.clone();
            let app = app.clone();
            tokio::spawn(async move {
                let _ = tcp.set_nodelay(true);
                let tls = match acceptor.accept(tcp).await {
                    Ok(t) => t,
                    Err(e) => {
                        debug!(%peer, error = %e, "TLS handshake failed");
                        return;
                    }
                };
                let identity = tls
                    .get_ref()
                    .1
                    .peer_certificates()
                    .and_then(|certs| certs.first())
                    .and_then(|cert| identity_from_cert(cert.as_ref()));
                let service = app.map_request(move |mut req: Request<hyper::body::Incoming>| {
                    if let Some(id) = &identity {
                        req.extensions_mut().insert(id.clone());
                    }
                    req
                });
                let service = hyper_util::service::TowerToHyperService::new(service);
                if let Err(e) = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection_with_upgrades(TokioIo::new(tls), service)
                    .await
                {
                    debug!(%peer, error = %e, "connection ended with an error");
                }
            });
        }
    });
    info!(address = %local_addr, kubeconfig = %kubeconfig.display(), "serving the Kubernetes API");
    Ok(RunningServer {
        local_addr,
        kubeconfig,
        stop,
        task,
        app: local_app,
    })
}

fn tls_config(pki: &Pki) -> Result<rustls::ServerConfig, ServerError> {
    let tls_err = |e: &dyn std::fmt::Display| ServerError::Tls(e.to_string());
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let certs = rustls_pemfile::certs(&mut pki.server_cert.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| tls_err(&e))?;
    let key = rustls_pemfile::private_key(&mut pki.server_key.as_bytes())
        .map_err(|e| tls_err(&e))?
        .ok_or_else(|| ServerError::Tls("no private key in server.key".into()))?;
    let mut roots = rustls::RootCertStore::empty();
    for ca in rustls_pemfile::certs(&mut pki.ca_cert.as_bytes()) {
        roots
            .add(ca.map_err(|e| tls_err(&e))?)
            .map_err(|e| tls_err(&e))?;
    }
    // Client certificates are optional (bearer tokens and health checks come without one),
    // but one that is presented must chain to our CA.
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        Arc::new(roots),
        provider.clone(),
    )
    .allow_unauthenticated()
    .build()
    .map_err(|e| tls_err(&e))?;
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| tls_err(&e))?
        .with_client_cert_verifier(verifier)
        .with_single_cert(certs, key)
        .map_err(|e| tls_err(&e))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

/// The user (CN) and groups (O) of a verified client certificate.
fn identity_from_cert(der: &[u8]) -> Option<Identity> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    let subject = cert.subject();
    let user = subject.iter_common_name().next()?.as_str().ok()?.to_owned();
    let mut groups: Vec<String> = subject
        .iter_organization()
        .filter_map(|o| o.as_str().ok().map(str::to_owned))
        .collect();
    groups.push("system:authenticated".into());
    Some(Identity {
        user,
        groups,
        ..Identity::default()
    })
}

const JWKS_PATH: &str = "/openid/v1/jwks";

/// Service account issuer discovery, as upstream serves it (cacheable for an hour).
fn issuer_document(content_type: &'static str, body: &serde_json::Value) -> Response {
    let mut response = api::json_response(StatusCode::OK, body);
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static(content_type),
    );
    headers.insert(
        header::CACHE_CONTROL,
        header::HeaderValue::from_static("public, max-age=3600"),
    );
    response
}

fn router(state: AppState) -> Router {
    Router::new()
        .route(
            "/.well-known/openid-configuration",
            get(|State(state): State<AppState>| async move {
                issuer_document(
                    "application/json",
                    &auth::openid_configuration(&state.jwks_uri),
                )
            }),
        )
        .route(
            JWKS_PATH,
            get(|State(state): State<AppState>| async move {
                match &state.api.tokens {
                    Some(signer) => issuer_document("application/jwk-set+json", &signer.jwks()),
                    None => api::not_found_path().into_response(),
                }
            }),
        )
        .route("/healthz", get(ok))
        .route("/livez", get(ok))
        .route("/readyz", get(ok))
        .route("/version", get(version))
        .route(
            "/metrics",
            get(|State(state): State<AppState>| async move {
                (
                    [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
                    state.metrics.render(),
                )
            }),
        )
        .route(
            "/api",
            get(|headers: HeaderMap| async move { discovery::core(&headers) }),
        )
        .route(
            "/apis",
            get(|headers: HeaderMap| async move { discovery::groups(&headers) }),
        )
        .route("/openapi/v3", get(openapi::index))
        .route(
            "/openapi/v2",
            get(|headers: HeaderMap| async move { openapi::v2(&headers).await }),
        )
        .fallback(dispatch)
        .layer(middleware::from_fn_with_state(state.clone(), authenticate))
        .layer(middleware::from_fn(compress::large_responses))
        .layer(DefaultBodyLimit::disable())
        .with_state(state)
}

async fn ok() -> &'static str {
    "ok"
}

async fn version() -> Response {
    let body = json!({
        "major": "1",
        "minor": "33",
        "gitVersion": "v1.33.0-dao",
        "gitCommit": "",
        "gitTreeState": "clean",
        "buildDate": "",
        "goVersion": "",
        "compiler": "rustc",
        "platform": "linux/amd64",
    });
    api::json_response(StatusCode::OK, &body)
}

/// The identity of the admin credentials (token and client certificate alike).
pub(crate) fn admin_identity() -> Identity {
    Identity::master("kubernetes-admin")
}

/// Everything but health and version needs an identity: a verified client certificate, the
/// admin bearer token or a service account token. Then RBAC decides (`system:masters` may do
/// everything), with upstream's 403 for what it does not allow.
async fn authenticate(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    let path = req.uri().path().to_owned();
    if matches!(
        path.as_str(),
        "/healthz" | "/livez" | "/readyz" | "/version"
    ) {
        return next.run(req).await;
    }
    if req.extensions().get::<Identity>().is_none() {
        let token = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim);
        let identity = match token {
            Some(t) if constant_time_eq(t.as_bytes(), state.admin_token.as_bytes()) => {
                Some(admin_identity())
            }
            Some(t) => auth::authenticate(&state.api, t).await,
            None => None,
        };
        match identity {
            Some(identity) => {
                req.extensions_mut().insert(identity);
            }
            None => return ApiError::unauthorized().into_response(),
        }
    }
    let requester = req.extensions().get::<Identity>().expect("set above");
    match impersonation::resolve(&state.api.rbac, requester, req.headers()) {
        Ok(Some(acting)) => {
            req.extensions_mut().insert(acting);
        }
        Ok(None) => {}
        Err(e) => return e.into_response(),
    }
    let identity = req.extensions().get::<Identity>().expect("set above");
    if !rbac::is_master(identity) {
        let watch = api::Query::parse(req.uri().query()).flag("watch");
        let attributes = rbac::Attributes::from_request(req.method().as_str(), &path, watch);
        if !rbac::authorize(&state.api.rbac, identity, &attributes).allowed {
            return rbac::forbidden(identity, &attributes).into_response();
        }
    }
    next.run(req).await
}

pub(crate) fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

async fn dispatch(State(state): State<AppState>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let path = parts.uri.path().to_owned();
    let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
    // Group and group-version discovery documents.
    if parts.method == axum::http::Method::GET {
        let query = parts.uri.query();
        let openapi_doc = match segs.as_slice() {
            ["openapi", "v3", "api", v] => openapi::group_version("", v, query).await,
            ["openapi", "v3", "apis", g, v] => openapi::group_version(g, v, query).await,
            _ => None,
        };
        if let Some(doc) = openapi_doc {
            return doc;
        }
        let doc = match segs.as_slice() {
            ["api", v] => discovery::resources("", v),
            ["apis", g] => discovery::group(g),
            ["apis", g, v] => discovery::resources(g, v),
            _ => None,
        };
        if let Some(doc) = doc {
            return doc;
        }
    }
    let body = match axum::body::to_bytes(Body::new(body), api::MAX_BODY_BYTES).await {
        Ok(b) => b,
        Err(_) => return ApiError::too_large().into_response(),
    };
    let query = api::Query::parse(parts.uri.query());
    let started = std::time::Instant::now();
    let method = parts.method.clone();
    let local = parts.extensions.get::<LocalCaller>().is_some();
    let identity = parts.extensions.get::<Identity>();
    let reviewed = match identity {
        Some(identity) => review(&state, identity, &method, &segs, &parts.headers, &body).await,
        None => None,
    };
    let result = match (reviewed, identity) {
        (Some(result), _) => result,
        (None, identity) => {
            let handled = api::handle(
                state.api.clone(),
                parts.method.clone(),
                &path,
                query,
                &parts.headers,
                body,
                local,
            );
            match identity {
                Some(identity) => rbac::REQUESTER.scope(identity.clone(), handled).await,
                None => handled.await,
            }
        }
    };
    let response = result.unwrap_or_else(IntoResponse::into_response);
    state.metrics.observe(
        method.as_str(),
        response.status().as_u16(),
        started.elapsed(),
    );
    debug!(%method, path, code = response.status().as_u16(), elapsed = ?started.elapsed(), "request");
    response
}

/// The reviews of `authentication.k8s.io/v1` and `authorization.k8s.io/v1`: create-only
/// resources answered from the caller's identity and RBAC, never stored. `None` for any other
/// path.
async fn review(
    state: &AppState,
    identity: &Identity,
    method: &axum::http::Method,
    segs: &[&str],
    headers: &HeaderMap,
    body: &[u8],
) -> Option<Result<Response, ApiError>> {
    let (review, namespace) = match segs {
        ["apis", group, version, plural] => (registry::find_review(group, version, plural)?, None),
        ["apis", group, version, "namespaces", ns, plural] => {
            (registry::find_review(group, version, plural)?, Some(*ns))
        }
        _ => return None,
    };
    if review.namespaced != namespace.is_some() {
        return None;
    }
    if *method != axum::http::Method::POST {
        return Some(Err(ApiError::method_not_allowed(
            "the server does not allow this method on the requested resource",
        )));
    }
    let kind = review.kind;
    let result = async {
        let body = api::parse_body(headers, body)?;
        let rbac = &state.api.rbac;
        let review = match kind {
            "SelfSubjectReview" => auth::self_subject_review(identity),
            "TokenReview" => auth::token_review(&state.api, &state.admin_token, &body).await?,
            "SelfSubjectRulesReview" => rbac::rules_review(rbac, identity, &body),
            _ => rbac::access_review(rbac, identity, kind, namespace, &body)?,
        };
        Ok(api::json_response(StatusCode::CREATED, &review))
    }
    .await;
    Some(result)
}
