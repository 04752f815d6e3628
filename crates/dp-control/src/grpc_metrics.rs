//! Counts of the gRPC requests served: per method and gRPC status code (a tower layer around
//! the server, [`GrpcMetricsLayer`]), and per method and dpservice error code (the `Status`
//! inside a reply, counted where a failed reply is made).
//!
//! dpservice answers almost every request with gRPC code OK and puts its own error code into
//! the reply's `status`; both are counted, so that a dashboard sees failing requests either
//! way. The counts live in the process-wide [`GRPC_COUNTERS`] (a mutex over a small map: the
//! control plane's path, never the packet path), read by the daemon's metrics endpoint.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Mutex;
use std::task::{Context, Poll};

/// The gRPC requests of this process.
pub static GRPC_COUNTERS: GrpcCounters = GrpcCounters::new();

/// Request counts, see the module docs.
#[derive(Debug)]
pub struct GrpcCounters {
    /// (method, gRPC code) → requests.
    requests: Mutex<BTreeMap<(&'static str, i32), u64>>,
    /// (method, dpservice error code) → failed replies.
    errors: Mutex<BTreeMap<(&'static str, u32), u64>>,
}

impl Default for GrpcCounters {
    fn default() -> Self {
        GrpcCounters::new()
    }
}

impl GrpcCounters {
    pub const fn new() -> Self {
        GrpcCounters {
            requests: Mutex::new(BTreeMap::new()),
            errors: Mutex::new(BTreeMap::new()),
        }
    }

    /// Counts a request of `method` answered with gRPC code `code`.
    pub fn count_request(&self, method: &'static str, code: i32) {
        if let Ok(mut m) = self.requests.lock() {
            *m.entry((method, code)).or_default() += 1;
        }
    }

    /// Counts a reply of `method` whose status carries dpservice error `code`.
    pub fn count_error(&self, method: &'static str, code: u32) {
        if let Ok(mut m) = self.errors.lock() {
            *m.entry((method, code)).or_default() += 1;
        }
    }

    /// Every (method, gRPC code name) counted, with its requests.
    pub fn requests(&self) -> Vec<(&'static str, &'static str, u64)> {
        self.requests
            .lock()
            .map(|m| {
                m.iter()
                    .map(|(&(method, code), &n)| (method, code_name(code), n))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Every (method, dpservice error code) counted, with its failed replies.
    pub fn errors(&self) -> Vec<(&'static str, u32, u64)> {
        self.errors
            .lock()
            .map(|m| {
                m.iter()
                    .map(|(&(method, code), &n)| (method, code, n))
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// The canonical name of a gRPC status code (`OK`, `INVALID_ARGUMENT`, …).
pub fn code_name(code: i32) -> &'static str {
    match code {
        0 => "OK",
        1 => "CANCELLED",
        2 => "UNKNOWN",
        3 => "INVALID_ARGUMENT",
        4 => "DEADLINE_EXCEEDED",
        5 => "NOT_FOUND",
        6 => "ALREADY_EXISTS",
        7 => "PERMISSION_DENIED",
        8 => "RESOURCE_EXHAUSTED",
        9 => "FAILED_PRECONDITION",
        10 => "ABORTED",
        11 => "OUT_OF_RANGE",
        12 => "UNIMPLEMENTED",
        13 => "INTERNAL",
        14 => "UNAVAILABLE",
        15 => "DATA_LOSS",
        16 => "UNAUTHENTICATED",
        _ => "UNKNOWN",
    }
}

/// The services whose methods are counted by name; anything else counts as `other` (the
/// label's values stay bounded whatever clients send).
const SERVICES: &[&str] = &["/dpdkironcore.v1.DPDKironcore/", "/grpc.health.v1.Health/"];

/// The method of a request path, as a label value: one of the known services' methods, else
/// `other`. Interned: the generated server's method names are a fixed set, so each distinct
/// name is leaked once.
fn method_of(path: &str) -> &'static str {
    static NAMES: Mutex<Vec<&'static str>> = Mutex::new(Vec::new());
    let Some(name) = SERVICES.iter().find_map(|s| path.strip_prefix(s)) else {
        return "other";
    };
    if name.is_empty()
        || name.len() > 64
        || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
    {
        return "other";
    }
    let Ok(mut names) = NAMES.lock() else {
        return "other";
    };
    if let Some(&n) = names.iter().find(|&&n| n == name) {
        return n;
    }
    // Bounded: the services have a few dozen methods; past that, `other`.
    if names.len() >= 256 {
        return "other";
    }
    let leaked: &'static str = Box::leak(name.to_owned().into_boxed_str());
    names.push(leaked);
    leaked
}

/// The gRPC code in `grpc-status` of these headers (or trailers), if there is one.
fn grpc_status(headers: &http::HeaderMap) -> Option<i32> {
    headers
        .get("grpc-status")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
}

/// The tower layer that counts every request by method and gRPC code into `counters`.
#[derive(Clone, Copy, Debug)]
pub struct GrpcMetricsLayer {
    counters: &'static GrpcCounters,
}

impl GrpcMetricsLayer {
    pub fn new(counters: &'static GrpcCounters) -> Self {
        GrpcMetricsLayer { counters }
    }
}

impl<S> tower_layer::Layer<S> for GrpcMetricsLayer {
    type Service = GrpcMetrics<S>;

    fn layer(&self, inner: S) -> Self::Service {
        GrpcMetrics {
            inner,
            counters: self.counters,
        }
    }
}

/// The service [`GrpcMetricsLayer`] makes.
#[derive(Clone, Debug)]
pub struct GrpcMetrics<S> {
    inner: S,
    counters: &'static GrpcCounters,
}

impl<S, B, R> tower_service::Service<http::Request<B>> for GrpcMetrics<S>
where
    S: tower_service::Service<http::Request<B>, Response = http::Response<R>>,
    S::Future: Send + 'static,
    R: http_body::Body + Unpin,
{
    type Response = http::Response<CountingBody<R>>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let method = method_of(req.uri().path());
        let counters = self.counters;
        let fut = self.inner.call(req);
        Box::pin(async move {
            let resp = fut.await?;
            // A trailers-only response (an error) has its code in the headers.
            let pending = match grpc_status(resp.headers()) {
                Some(code) => {
                    counters.count_request(method, code);
                    None
                }
                None => Some((counters, method)),
            };
            Ok(resp.map(|inner| CountingBody { inner, pending }))
        })
    }
}

/// A response body that counts its request when the trailers with the gRPC code pass (or, if
/// none come, when it ends or is dropped: UNKNOWN, CANCELLED).
#[derive(Debug)]
pub struct CountingBody<B> {
    inner: B,
    /// Not counted yet: where to, and the method.
    pending: Option<(&'static GrpcCounters, &'static str)>,
}

impl<B> CountingBody<B> {
    fn finish(&mut self, code: i32) {
        if let Some((counters, method)) = self.pending.take() {
            counters.count_request(method, code);
        }
    }
}

impl<B> Drop for CountingBody<B> {
    fn drop(&mut self) {
        // Dropped before its end: the client went away.
        self.finish(1);
    }
}

impl<B: http_body::Body + Unpin> http_body::Body for CountingBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        let this = &mut *self;
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(code) = frame.trailers_ref().and_then(grpc_status) {
                    this.finish(code);
                }
            }
            Poll::Ready(Some(Err(_))) => this.finish(2),
            Poll::Ready(None) => this.finish(2),
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn methods_are_bounded_label_values() {
        assert_eq!(
            method_of("/dpdkironcore.v1.DPDKironcore/CreateInterface"),
            "CreateInterface"
        );
        assert_eq!(method_of("/grpc.health.v1.Health/Check"), "Check");
        assert_eq!(method_of("/evil.Service/CreateInterface"), "other");
        assert_eq!(method_of("/dpdkironcore.v1.DPDKironcore/a\"b"), "other");
        assert_eq!(method_of("/dpdkironcore.v1.DPDKironcore/"), "other");
        // Interned once.
        let a = method_of("/dpdkironcore.v1.DPDKironcore/ListRoutes");
        let b = method_of("/dpdkironcore.v1.DPDKironcore/ListRoutes");
        assert!(std::ptr::eq(a, b));
    }

    /// A stand-in for the server: answers with `headers` on the response and a body of
    /// `String` (no trailers).
    #[derive(Clone)]
    struct Answer(Option<&'static str>);

    impl tower_service::Service<http::Request<()>> for Answer {
        type Response = http::Response<String>;
        type Error = std::convert::Infallible;
        type Future = std::future::Ready<Result<Self::Response, Self::Error>>;

        fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
            Poll::Ready(Ok(()))
        }

        fn call(&mut self, _: http::Request<()>) -> Self::Future {
            let mut r = http::Response::new("body".to_owned());
            if let Some(code) = self.0 {
                r.headers_mut()
                    .insert("grpc-status", http::HeaderValue::from_static(code));
            }
            std::future::ready(Ok(r))
        }
    }

    #[test]
    fn the_layer_counts_trailers_only_ended_and_dropped_responses() {
        use tower_layer::Layer;
        use tower_service::Service;
        let counters: &'static GrpcCounters = Box::leak(Box::new(GrpcCounters::new()));
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let req = |m: &str| {
            http::Request::builder()
                .uri(format!("/dpdkironcore.v1.DPDKironcore/{m}"))
                .body(())
                .unwrap()
        };
        // An error in the headers (trailers-only): counted at once.
        let mut svc = GrpcMetricsLayer::new(counters).layer(Answer(Some("3")));
        let resp = rt.block_on(svc.call(req("CreateRoute"))).unwrap();
        assert_eq!(
            counters.requests(),
            vec![("CreateRoute", "INVALID_ARGUMENT", 1)]
        );
        drop(resp);
        assert_eq!(counters.requests().len(), 1);
        // A body that ends without trailers: UNKNOWN; one dropped unread: CANCELLED.
        let mut svc = GrpcMetricsLayer::new(counters).layer(Answer(None));
        let mut resp = rt.block_on(svc.call(req("ListRoutes"))).unwrap();
        rt.block_on(std::future::poll_fn(|cx| {
            let body = Pin::new(resp.body_mut());
            match http_body::Body::poll_frame(body, cx) {
                Poll::Ready(Some(_)) => {
                    cx.waker().wake_by_ref();
                    Poll::Pending
                }
                Poll::Ready(None) => Poll::Ready(()),
                Poll::Pending => Poll::Pending,
            }
        }));
        let resp2 = rt.block_on(svc.call(req("GetVersion"))).unwrap();
        drop(resp2);
        drop(resp);
        let mut got = counters.requests();
        got.sort_unstable();
        assert_eq!(
            got,
            vec![
                ("CreateRoute", "INVALID_ARGUMENT", 1),
                ("GetVersion", "CANCELLED", 1),
                ("ListRoutes", "UNKNOWN", 1),
            ]
        );
    }

    #[test]
    fn counts_by_method_and_code() {
        let c = GrpcCounters::new();
        c.count_request("Init", 0);
        c.count_request("Init", 0);
        c.count_request("Init", 3);
        c.count_error("CreateInterface", 202);
        assert_eq!(
            c.requests(),
            vec![("Init", "OK", 2), ("Init", "INVALID_ARGUMENT", 1)]
        );
        assert_eq!(c.errors(), vec![("CreateInterface", 202, 1)]);
        assert_eq!(code_name(99), "UNKNOWN");
    }
}
