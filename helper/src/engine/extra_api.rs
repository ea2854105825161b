//! The Docker endpoints bollard 0.18 lacks (checkpoint create, start from a checkpoint), on the HTTP
//! stack bollard itself is built on (hyper 1 over the daemon's unix socket) and at the API version
//! bollard negotiated with the daemon.
//!
//! One connection per call: these run once per checkpoint or restore, so a pool would only keep
//! idle connections (and a background task) around.
use crate::error::{Error, HttpFailure, Result};
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::{Method, Request, StatusCode};
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};

/// Where and how to reach the daemon for these endpoints.
pub struct ExtraApi {
    /// The socket's path (without `unix://`).
    socket: String,
    /// The negotiated API version, e.g. "1.41".
    version: String,
}

/// One request, as the daemon's API names it: the version prefix is added when it is sent, and
/// errors name the call without it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Call {
    pub method: Method,
    /// Path and query, e.g. `/containers/ID/start?checkpoint=NAME`.
    pub path: String,
    pub body: Option<String>,
}

/// Everything but RFC 3986's unreserved characters.
const RESERVED: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// A path segment or query value: ids and names are plain today, but nothing here relies on it.
fn enc(s: &str) -> impl std::fmt::Display + '_ {
    utf8_percent_encode(s, RESERVED)
}

impl Call {
    /// `POST /containers/{id}/checkpoints`.
    pub fn checkpoint_create(id: &str, name: &str, exit: bool) -> Call {
        Call {
            method: Method::POST,
            path: format!("/containers/{}/checkpoints", enc(id)),
            body: Some(serde_json::json!({ "CheckpointID": name, "Exit": exit }).to_string()),
        }
    }

    /// `POST /containers/{id}/start?checkpoint=NAME`.
    pub fn start_from_checkpoint(id: &str, name: &str) -> Call {
        Call {
            method: Method::POST,
            path: format!("/containers/{}/start?checkpoint={}", enc(id), enc(name)),
            body: None,
        }
    }

    /// The HTTP request for API `version`.
    pub fn request(&self, version: &str) -> Result<Request<Full<Bytes>>> {
        let body = self.body.clone().unwrap_or_default();
        Request::builder()
            .method(self.method.clone())
            .uri(format!("/v{version}{}", self.path))
            // The daemon ignores the host of a unix-socket request, but HTTP/1.1 requires one.
            .header(hyper::header::HOST, "docker")
            .header(hyper::header::CONTENT_TYPE, "application/json")
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| self.failed(HttpFailure::Request(e)))
    }

    /// What the daemon's answer means: success, or `DockerApi` with Docker's own message (callers
    /// read it: the CRIU log path, "already paused").
    pub fn outcome(&self, status: StatusCode, body: &[u8]) -> Result<()> {
        if status.is_success() {
            return Ok(());
        }
        #[derive(serde::Deserialize)]
        struct Answer {
            message: String,
        }
        let message = match serde_json::from_slice::<Answer>(body) {
            Ok(a) => a.message,
            // Not Docker's JSON (a proxy, an old daemon): the text as it came.
            Err(_) => String::from_utf8_lossy(body).trim().to_string(),
        };
        Err(Error::DockerApi {
            method: self.method.to_string(),
            path: self.path.clone(),
            status: status.as_u16(),
            message,
        })
    }

    fn failed(&self, why: HttpFailure) -> Error {
        Error::DockerHttp {
            method: self.method.to_string(),
            path: self.path.clone(),
            why,
        }
    }
}

impl ExtraApi {
    pub fn new(socket: &str, version: impl Into<String>) -> Self {
        ExtraApi {
            socket: socket.strip_prefix("unix://").unwrap_or(socket).to_string(),
            version: version.into(),
        }
    }

    /// Send `call` and wait for the daemon's whole answer (no timeout: a dump takes as long as the
    /// container's memory needs).
    pub async fn send(&self, call: &Call) -> Result<()> {
        let req = call.request(&self.version)?;
        let stream = tokio::net::UnixStream::connect(&self.socket)
            .await
            .map_err(|e| Error::io(&self.socket, e))?;
        let http = |e| call.failed(HttpFailure::Http(e));
        let (mut sender, conn) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
                .await
                .map_err(http)?;
        // The connection is driven by its own task until the answer is read; it ends with it.
        let driver = tokio::spawn(conn);
        let res = async {
            let resp = sender.send_request(req).await.map_err(http)?;
            let status = resp.status();
            let body = resp.into_body().collect().await.map_err(http)?.to_bytes();
            call.outcome(status, &body)
        }
        .await;
        driver.abort();
        res
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_carry_the_negotiated_version() {
        let c = Call::checkpoint_create("abc123", "gen-4", false);
        let r = c.request("1.41").unwrap();
        assert_eq!(r.method(), Method::POST);
        assert_eq!(r.uri(), "/v1.41/containers/abc123/checkpoints");
        assert_eq!(r.headers()[hyper::header::CONTENT_TYPE], "application/json");
        let body: serde_json::Value = serde_json::from_str(c.body.as_deref().unwrap()).unwrap();
        assert_eq!(
            body,
            serde_json::json!({"CheckpointID": "gen-4", "Exit": false})
        );

        let c = Call::start_from_checkpoint("abc123", "gen-4");
        let r = c.request("1.45").unwrap();
        assert_eq!(r.uri(), "/v1.45/containers/abc123/start?checkpoint=gen-4");
        assert_eq!(c.body, None);
    }

    #[test]
    fn odd_names_are_encoded_not_injected() {
        let c = Call::start_from_checkpoint("a/b", "x&y=z");
        assert_eq!(c.path, "/containers/a%2Fb/start?checkpoint=x%26y%3Dz");
        assert!(c.request("1.41").is_ok());
    }

    #[test]
    fn answers_are_classified_with_dockers_message() {
        let c = Call::checkpoint_create("abc", "gen-1", false);
        assert!(c.outcome(StatusCode::CREATED, b"").is_ok());
        assert!(c.outcome(StatusCode::NO_CONTENT, b"").is_ok());

        let body =
            br#"{"message":"criu failed: type NOTIFY errno 0\nlog file: /run/x/criu-dump.log"}"#;
        match c.outcome(StatusCode::INTERNAL_SERVER_ERROR, body) {
            Err(Error::DockerApi {
                method,
                path,
                status,
                message,
            }) => {
                assert_eq!(
                    (method.as_str(), path.as_str(), status),
                    ("POST", "/containers/abc/checkpoints", 500)
                );
                assert!(
                    message.ends_with("log file: /run/x/criu-dump.log"),
                    "{message}"
                );
            }
            other => panic!("{other:?}"),
        }
        // A body that is not Docker's JSON is kept as text.
        match c.outcome(StatusCode::NOT_FOUND, b"page not found\n") {
            Err(Error::DockerApi {
                status: 404,
                message,
                ..
            }) => assert_eq!(message, "page not found"),
            other => panic!("{other:?}"),
        }
    }
}

#[cfg(test)]
mod wire {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A one-shot daemon on a unix socket: returns what it was sent, answers `reply`.
    async fn daemon(reply: &'static str) -> (tempfile::TempDir, tokio::task::JoinHandle<String>) {
        let dir = tempfile::tempdir().unwrap();
        let l = tokio::net::UnixListener::bind(dir.path().join("d.sock")).unwrap();
        let task = tokio::spawn(async move {
            let (mut s, _) = l.accept().await.unwrap();
            let mut got = Vec::new();
            let mut buf = [0u8; 4096];
            // Headers, then the body Content-Length announces.
            loop {
                let n = s.read(&mut buf).await.unwrap();
                got.extend_from_slice(&buf[..n]);
                let text = String::from_utf8_lossy(&got).to_string();
                if let Some((head, body)) = text.split_once("\r\n\r\n") {
                    let len = head
                        .lines()
                        .find_map(|l| {
                            l.to_ascii_lowercase()
                                .strip_prefix("content-length: ")
                                .map(|v| v.parse::<usize>().unwrap())
                        })
                        .unwrap_or(0);
                    if body.len() >= len {
                        break;
                    }
                }
            }
            s.write_all(reply.as_bytes()).await.unwrap();
            String::from_utf8(got).unwrap()
        });
        (dir, task)
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_refusal_comes_back_as_docker_api() {
        let (dir, task) = daemon(
            "HTTP/1.1 500 Internal Server Error\r\nContent-Type: application/json\r\nContent-Length: 21\r\n\r\n{\"message\":\"no criu\"}",
        )
        .await;
        let sock = format!("unix://{}", dir.path().join("d.sock").display());
        let api = ExtraApi::new(&sock, "1.43");
        let res = api
            .send(&Call::checkpoint_create("c1", "gen-2", true))
            .await;
        let sent = task.await.unwrap();
        assert!(
            sent.starts_with("POST /v1.43/containers/c1/checkpoints HTTP/1.1\r\n"),
            "{sent}"
        );
        assert!(
            sent.ends_with(r#"{"CheckpointID":"gen-2","Exit":true}"#),
            "{sent}"
        );
        match res {
            Err(Error::DockerApi {
                status: 500,
                message,
                ..
            }) => assert_eq!(message, "no criu"),
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test(flavor = "current_thread")]
    async fn no_content_is_success() {
        let (dir, task) = daemon("HTTP/1.1 204 No Content\r\n\r\n").await;
        let api = ExtraApi::new(&dir.path().join("d.sock").display().to_string(), "1.41");
        api.send(&Call::start_from_checkpoint("c1", "gen-2"))
            .await
            .unwrap();
        assert!(task
            .await
            .unwrap()
            .starts_with("POST /v1.41/containers/c1/start?checkpoint=gen-2 HTTP/1.1\r\n"));
    }
}
