//! Response compression, as upstream's `APIResponseCompression`: a response larger than
//! 128 KiB, to a client that accepts gzip (client-go and so kubectl always do), goes out
//! gzip-encoded at level 1, the level upstream uses. Smaller responses, watches, log
//! follows and upgraded connections are passed through untouched.
//!
//! Upstream decides by the size of the first write of an encoded response; here the body is
//! read until it passes the threshold or ends, which is the same for whole responses and
//! close for a streamed LIST (its first chunk is the list's first store page).

use std::io::Write;

use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::Response;
use bytes::Bytes;
use flate2::Compression;
use flate2::write::GzEncoder;
use futures::StreamExt;

/// Responses up to this size go out as they are (upstream's `defaultGzipThresholdBytes`).
pub const THRESHOLD: usize = 128 * 1024;

/// Whether an `Accept-Encoding` header lists gzip (with a non-zero weight, if any).
fn accepts_gzip(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT_ENCODING)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|coding| {
            let mut parts = coding.split(';').map(str::trim);
            parts.next().is_some_and(|c| c.eq_ignore_ascii_case("gzip"))
                && parts.all(|p| {
                    p.strip_prefix("q=")
                        .and_then(|q| q.parse::<f32>().ok())
                        .is_none_or(|q| q > 0.0)
                })
        })
}

/// Whether the response to this request streams for as long as the client stays (a watch, a
/// followed log, an upgrade to a stream protocol): those are never held back to compress.
fn streams(req: &Request) -> bool {
    let query = crate::api::Query::parse(req.uri().query());
    query.flag("watch")
        || query.flag("follow")
        || req.uri().path().contains("/watch/")
        || req.headers().contains_key(header::UPGRADE)
}

/// The middleware: compress large responses for clients that accept gzip.
pub async fn large_responses(req: Request, next: Next) -> Response {
    let wanted = accepts_gzip(req.headers()) && !streams(&req);
    let response = next.run(req).await;
    if !wanted
        || response.status() == StatusCode::SWITCHING_PROTOCOLS
        || response.headers().contains_key(header::CONTENT_ENCODING)
    {
        return response;
    }
    gzip_if_large(response).await
}

async fn gzip_if_large(response: Response) -> Response {
    let (mut parts, body) = response.into_parts();
    let known = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<usize>().ok());
    if known.is_some_and(|n| n <= THRESHOLD) {
        return Response::from_parts(parts, body);
    }
    let mut stream = body.into_data_stream();
    let mut head = Vec::new();
    while head.len() <= THRESHOLD {
        match stream.next().await {
            Some(Ok(chunk)) => head.extend_from_slice(&chunk),
            Some(Err(e)) => {
                // Cut short before the threshold: pass on what came, then the error.
                let cut = futures::stream::iter([Ok(Bytes::from(head)), Err(e)]);
                return Response::from_parts(parts, Body::from_stream(cut));
            }
            None => return Response::from_parts(parts, Body::from(head)),
        }
    }
    parts.headers.remove(header::CONTENT_LENGTH);
    parts
        .headers
        .insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
    parts
        .headers
        .append(header::VARY, HeaderValue::from_static("Accept-Encoding"));
    let body = async_stream::stream! {
        let mut gz = GzEncoder::new(Vec::with_capacity(head.len() / 4), Compression::fast());
        gz.write_all(&head).expect("writing to a Vec cannot fail");
        drop(head);
        yield Ok::<_, axum::Error>(Bytes::from(std::mem::take(gz.get_mut())));
        while let Some(chunk) = stream.next().await {
            match chunk {
                Ok(chunk) => {
                    gz.write_all(&chunk).expect("writing to a Vec cannot fail");
                    let out = std::mem::take(gz.get_mut());
                    if !out.is_empty() {
                        yield Ok(Bytes::from(out));
                    }
                }
                Err(e) => {
                    yield Err(e);
                    return;
                }
            }
        }
        yield Ok(Bytes::from(gz.finish().expect("writing to a Vec cannot fail")));
    };
    Response::from_parts(parts, Body::from_stream(body))
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::Router;
    use axum::routing::get;
    use flate2::read::GzDecoder;
    use std::io::Read;
    use tower::ServiceExt;

    fn app() -> Router {
        Router::new()
            .route("/small", get(|| async { "x".repeat(1000) }))
            .route("/large", get(|| async { "y".repeat(THRESHOLD + 1) }))
            .route(
                "/streamed",
                get(|| async {
                    let chunks = (0..100).map(|i| {
                        Ok::<_, std::io::Error>(Bytes::from(format!("{i:04}").repeat(1000)))
                    });
                    Body::from_stream(futures::stream::iter(chunks))
                }),
            )
            .layer(axum::middleware::from_fn(large_responses))
    }

    async fn fetch(path: &str, accept: Option<&str>) -> (Option<String>, Vec<u8>) {
        let mut req = Request::get(path);
        if let Some(a) = accept {
            req = req.header(header::ACCEPT_ENCODING, a);
        }
        let response = app()
            .oneshot(req.body(Body::empty()).unwrap())
            .await
            .unwrap();
        let encoding = response
            .headers()
            .get(header::CONTENT_ENCODING)
            .map(|v| v.to_str().unwrap().to_owned());
        let body = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap();
        (encoding, body.to_vec())
    }

    fn gunzip(bytes: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        GzDecoder::new(bytes).read_to_end(&mut out).unwrap();
        out
    }

    #[tokio::test]
    async fn only_large_responses_to_clients_that_accept_gzip_are_compressed() {
        let (encoding, body) = fetch("/large", Some("gzip")).await;
        assert_eq!(encoding.as_deref(), Some("gzip"));
        assert!(body.len() < 10_000, "{} bytes", body.len());
        assert_eq!(gunzip(&body), "y".repeat(THRESHOLD + 1).as_bytes());

        let streamed: String = (0..100).map(|i| format!("{i:04}").repeat(1000)).collect();
        let (encoding, body) = fetch("/streamed", Some("deflate, gzip;q=0.5")).await;
        assert_eq!(encoding.as_deref(), Some("gzip"));
        assert_eq!(gunzip(&body), streamed.as_bytes());

        for (path, accept) in [
            ("/small", Some("gzip")),
            ("/large", None),
            ("/large", Some("gzip;q=0")),
            ("/large", Some("br, deflate")),
            ("/large?watch=true", Some("gzip")),
            ("/large?follow=1", Some("gzip")),
        ] {
            let (encoding, body) = fetch(path, accept).await;
            assert_eq!(encoding, None, "{path} {accept:?}");
            assert!(body.len() == 1000 || body.len() == THRESHOLD + 1, "{path}");
        }
    }
}
