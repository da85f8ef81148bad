//! Responds to every request with `201 {"sid":"SM…"}` after reading its body, counts requests,
//! and exits once it has responded to the count given as its second argument. It stands in
//! for an SMS provider in the delivery benchmark, and as a server that does no work beside
//! herald in the ingest benchmark.
//! usage: http-sink ADDR COUNT

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let mut args = std::env::args().skip(1);
    let addr = args.next().expect("usage: http-sink ADDR COUNT");
    let stop_after: u64 = args.next().and_then(|n| n.parse().ok()).expect("usage: http-sink ADDR COUNT");
    let listener = TcpListener::bind(&addr).await.expect("bind");
    let answered = Arc::new(AtomicU64::new(0));
    loop {
        let (stream, _) = listener.accept().await.expect("accept");
        let _ = stream.set_nodelay(true);
        let answered = answered.clone();
        tokio::spawn(async move {
            let service = service_fn(move |request: Request<hyper::body::Incoming>| {
                let answered = answered.clone();
                async move {
                    let _ = request.into_body().collect().await;
                    let n = answered.fetch_add(1, Ordering::SeqCst) + 1;
                    let body = format!("{{\"sid\":\"SM{n:032x}\",\"status\":\"queued\"}}");
                    if n >= stop_after {
                        // Let the reply go out, then exit: the exit time marks the last delivery.
                        tokio::spawn(async {
                            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                            std::process::exit(0);
                        });
                    }
                    Ok::<_, std::convert::Infallible>(
                        Response::builder().status(201).header("content-type", "application/json").body(Full::new(Bytes::from(body))).unwrap(),
                    )
                }
            });
            let _ = http1::Builder::new().serve_connection(TokioIo::new(stream), service).await;
        });
    }
}
