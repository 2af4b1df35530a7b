//! The HTTP example served to a real HTTP client (hyper's) on 127.0.0.1: a listing, a file, a
//! missing file (404), and paths out of the root that never reach what is there (403 or 404).

#[allow(dead_code)]
#[path = "../examples/tenant_http.rs"]
mod example;

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;

/// `GET path` on a new connection to `addr`: the status and the body.
async fn get(addr: SocketAddr, path: &str) -> (u16, Vec<u8>) {
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tcp)).await.unwrap();
    tokio::spawn(connection);
    let request = hyper::Request::get(path).header("host", "localhost").body(Empty::<Bytes>::new()).unwrap();
    let response = sender.send_request(request).await.unwrap();
    let status = response.status().as_u16();
    let body = response.into_body().collect().await.unwrap().to_bytes().to_vec();
    (status, body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_example_serves_a_tenants_directory_over_http() {
    let outer = tempfile::tempdir().unwrap();
    std::fs::write(outer.path().join("secret"), b"not for the tenant").unwrap();
    let dir = outer.path().join("site");
    std::fs::create_dir_all(dir.join("sub")).unwrap();
    std::fs::write(dir.join("index.txt"), b"hello over http").unwrap();
    std::fs::write(dir.join("sub/deep.txt"), b"deeper").unwrap();
    std::os::unix::fs::symlink(outer.path().join("secret"), dir.join("escape")).unwrap();
    let fifo = std::ffi::CString::new(dir.join("fifo").to_str().unwrap()).unwrap();
    // SAFETY: a valid NUL-terminated path that outlives the call.
    assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o600) }, 0);
    let tenant = example::tenant_of(&dir, (Ipv4Addr::LOCALHOST, 0).into()).unwrap();
    let listener = tenant.tcp_listen((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
    let addr = listener.local_addr();
    let server = tokio::spawn(example::serve(tenant, listener));
    let checks = async {
        assert_eq!(get(addr, "/").await, (200, b"escape\nfifo\nindex.txt\nsub/\n".to_vec()));
        assert_eq!(get(addr, "/index.txt").await, (200, b"hello over http".to_vec()));
        assert_eq!(get(addr, "/sub/").await, (200, b"deep.txt\n".to_vec()));
        assert_eq!(get(addr, "/sub/deep.txt").await, (200, b"deeper".to_vec()));
        assert_eq!(get(addr, "/missing").await.0, 404);
        assert_eq!(get(addr, "/index.txt/x").await.0, 404);
        assert_eq!(get(addr, "/fifo").await.0, 403, "not a regular file");
        for path in ["/../secret", "/sub/../../secret", "/escape", "/%2e%2e/secret"] {
            let (status, body) = get(addr, path).await;
            assert!(status == 403 || status == 404, "{path}: {status}");
            assert_ne!(body, b"not for the tenant", "{path}");
        }
    };
    tokio::time::timeout(Duration::from_secs(60), checks).await.expect("the server answered in time");
    server.abort();
}
