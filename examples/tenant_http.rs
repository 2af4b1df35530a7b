//! A tenant's directory served over HTTP/1.1: hyper on the tenant's `TcpStream`, under tokio,
//! whatever backend the manager runs on. `GET /path` answers a file's bytes, a directory's
//! listing (one name a line, directories with a trailing `/`), 404 for what is not there and 403
//! for what the tenant may not reach (a `..` out of its root included: the sandbox refuses it,
//! the server does not have to).
//!
//! ```sh
//! cargo run --example tenant_http --features tokio -- DIR [ADDR]   # ADDR: 127.0.0.1:8080
//! curl http://127.0.0.1:8080/
//! ```

use std::convert::Infallible;
use std::io;
use std::net::{Ipv4Addr, SocketAddr};

use ai_os_kernel::sandbox::Policy;
use ai_os_kernel::syscalls::{EntryKind, IoUringManager};
use ai_os_kernel::tenant::{TcpListener, Tenant};
use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;

/// A manager whose process 1 may read `dir` and listen on `addr`.
pub fn tenant_of(dir: &std::path::Path, addr: SocketAddr) -> io::Result<Tenant> {
    let manager = IoUringManager::new();
    manager.set_policy(1, Policy::rooted(dir).allow_bind(addr.ip(), addr.port()).allow_listen())?;
    Ok(manager.tenant(1))
}

/// Serves `listener`'s connections, each on a task of its own, until accepting fails.
pub async fn serve(tenant: Tenant, listener: TcpListener) -> io::Result<()> {
    loop {
        let (stream, _) = listener.accept().await?;
        let tenant = tenant.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |request| respond(tenant.clone(), request));
            let served = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), service);
            if let Err(e) = served.await {
                eprintln!("connection: {e}");
            }
        });
    }
}

/// The answer to one request: only `GET`, of a file or a directory beneath the tenant's root.
async fn respond(tenant: Tenant, request: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    if request.method() != hyper::Method::GET {
        return Ok(status(StatusCode::METHOD_NOT_ALLOWED));
    }
    let path = request.uri().path();
    let answer = match tenant.metadata(path).await {
        Ok(st) if st.kind == EntryKind::Dir => listing(&tenant, path).await,
        Ok(_) => tenant.read(path).await,
        Err(e) => Err(e),
    };
    Ok(match answer {
        Ok(body) => Response::new(Full::new(Bytes::from(body))),
        Err(e) if e.kind() == io::ErrorKind::NotFound => status(StatusCode::NOT_FOUND),
        Err(e) if e.kind() == io::ErrorKind::PermissionDenied => status(StatusCode::FORBIDDEN),
        Err(e) if e.raw_os_error() == Some(libc::ENOTDIR) => status(StatusCode::NOT_FOUND),
        Err(_) => status(StatusCode::INTERNAL_SERVER_ERROR),
    })
}

/// A directory's names, sorted, one a line, a directory's with a trailing `/`.
async fn listing(tenant: &Tenant, path: &str) -> io::Result<Vec<u8>> {
    let mut names: Vec<String> = tenant
        .read_dir(path)
        .await?
        .into_iter()
        .map(|e| {
            let name = e.name.to_string_lossy().into_owned();
            if e.kind == EntryKind::Dir { name + "/" } else { name }
        })
        .collect();
    names.sort();
    Ok(names.into_iter().map(|n| n + "\n").collect::<String>().into_bytes())
}

fn status(code: StatusCode) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(code.canonical_reason().unwrap_or("").to_owned())));
    *response.status_mut() = code;
    response
}

#[tokio::main]
async fn main() -> io::Result<()> {
    let mut args = std::env::args().skip(1);
    let dir = args.next().unwrap_or_else(|| ".".into());
    let addr: SocketAddr = match args.next() {
        Some(addr) => addr.parse().map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, format!("{e}")))?,
        None => (Ipv4Addr::LOCALHOST, 8080).into(),
    };
    let tenant = tenant_of(std::path::Path::new(&dir), addr)?;
    let listener = tenant.tcp_listen(addr).await?;
    println!("serving {dir} on http://{}/ (backend: {})", listener.local_addr(), tenant.manager().stats().backend);
    serve(tenant, listener).await
}
