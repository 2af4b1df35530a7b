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
use std::time::Duration;

use ai_os_kernel::sandbox::Policy;
use ai_os_kernel::syscalls::{EntryKind, IoUringManager};
use ai_os_kernel::tenant::{File, TcpListener, Tenant};
use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};

/// A manager whose process 1 may read `dir` and listen on `addr`.
pub fn tenant_of(dir: &std::path::Path, addr: SocketAddr) -> io::Result<Tenant> {
    let manager = IoUringManager::new();
    manager.set_policy(1, Policy::rooted(dir).allow_bind(addr.ip(), addr.port()).allow_listen())?;
    Ok(manager.tenant(1))
}

/// The most bytes one response carries: a larger file is refused (413), never loaded whole.
const MOST: u64 = 64 << 20;

/// Serves `listener`'s connections, each on a task of its own, for as long as it runs. A
/// connection that sends no complete request head within 10 s is dropped, so idle ones do not
/// hold the tenant's descriptors; a failed accept (the tenant's descriptor limit, say) is
/// logged and tried again a moment later.
pub async fn serve(tenant: Tenant, listener: TcpListener) {
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                eprintln!("accept: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let tenant = tenant.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |request| respond(tenant.clone(), request));
            let served = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(Duration::from_secs(10))
                .serve_connection(TokioIo::new(stream), service);
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
        // Only regular files, read up to the size they had: never a device or a FIFO, never a
        // file that grows while it is read.
        Ok(st) if st.kind != EntryKind::File => Err(io::ErrorKind::PermissionDenied.into()),
        Ok(st) if st.size > MOST => return Ok(status(StatusCode::PAYLOAD_TOO_LARGE)),
        Ok(st) => file(&tenant, path, st.size).await,
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

/// The first `size` bytes of the file at `path` (fewer if it shrank meanwhile).
async fn file(tenant: &Tenant, path: &str, size: u64) -> io::Result<Vec<u8>> {
    let file = File::open(tenant, path).await?;
    let (read, buf) = file.read_exact_at(Vec::with_capacity(size as usize), 0).await;
    match read {
        Ok(()) => Ok(buf),
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Ok(buf),
        Err(e) => Err(e),
    }
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
    serve(tenant, listener).await;
    Ok(())
}
