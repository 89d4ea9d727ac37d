//! A token service for the test registry: the Docker registry token protocol
//! (<https://distribution.github.io/distribution/spec/auth/token/>) on
//! 127.0.0.1, on its own port, so its realm is another origin than the
//! registry's (as `auth.docker.io` is for Docker Hub). It checks one user and
//! password with HTTP basic auth and answers with a JWT that grants what the
//! `scope` asked for, signed with Ed25519 (EdDSA) by a key whose self-signed
//! certificate the registry trusts (`rootcertbundle`) and names in `x5c`.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use bytes::Bytes;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use rcgen::{CertificateParams, KeyPair, PKCS_ED25519, SigningKey};

/// The `service` the registry announces and the tokens' audience.
pub const TOKEN_AUDIENCE: &str = "wasmplug-e2e-registry";
/// The tokens' issuer, as the registry expects it.
pub const TOKEN_ISSUER: &str = "wasmplug-e2e-token-service";

/// A running token service; stopped when dropped.
#[derive(Debug)]
pub struct TokenService {
    address: SocketAddr,
    dir: tempfile::TempDir,
    requests: Arc<Mutex<Vec<String>>>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

struct Signer {
    key: KeyPair,
    /// The signing certificate, DER, for the `x5c` header.
    certificate: Vec<u8>,
    login: (String, String),
    issued: AtomicU64,
}

impl TokenService {
    /// Starts a service that grants tokens to `user` with `password`.
    pub fn start(user: &str, password: &str) -> anyhow::Result<Self> {
        let dir = tempfile::Builder::new().prefix("wasmplug-tokens-").tempdir()?;
        let key = KeyPair::generate_for(&PKCS_ED25519)?;
        let certificate = CertificateParams::new(vec!["wasmplug-e2e-token-signer".to_owned()])?.self_signed(&key)?;
        std::fs::write(dir.path().join("signer.pem"), certificate.pem())?;
        let signer = Arc::new(Signer {
            key,
            certificate: certificate.der().to_vec(),
            login: (user.to_owned(), password.to_owned()),
            issued: AtomicU64::new(0),
        });
        let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        listener.set_nonblocking(true)?;
        let address = listener.local_addr()?;
        let requests: Arc<Mutex<Vec<String>>> = Arc::default();
        let (stop, stopped) = tokio::sync::oneshot::channel();
        let log = requests.clone();
        // Its own thread and runtime: tests block their own (oras runs as a
        // child process while the registry asks this service for a token).
        let thread = std::thread::spawn(move || {
            let Ok(runtime) = tokio::runtime::Builder::new_current_thread().enable_all().build() else { return };
            runtime.block_on(serve(listener, signer, log, stopped));
        });
        Ok(TokenService { address, dir, requests, stop: Some(stop), thread: Some(thread) })
    }

    /// The realm the registry announces.
    pub fn realm(&self) -> String {
        format!("http://{}/token", self.address)
    }

    /// `host:port` of the realm, as a dockerconfigjson `auths` key names it.
    pub fn address(&self) -> String {
        self.address.to_string()
    }

    /// What the registry is configured with to use this service.
    pub fn auth(&self) -> TokenAuth {
        TokenAuth { realm: self.realm(), certificate: self.dir.path().join("signer.pem") }
    }

    /// The `user` of each token request so far (`-` for anonymous or refused).
    pub fn requests(&self) -> Vec<String> {
        self.requests.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

impl Drop for TokenService {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

async fn serve(
    listener: std::net::TcpListener,
    signer: Arc<Signer>,
    log: Arc<Mutex<Vec<String>>>,
    mut stopped: tokio::sync::oneshot::Receiver<()>,
) {
    let Ok(listener) = tokio::net::TcpListener::from_std(listener) else { return };
    loop {
        let stream = tokio::select! {
            _ = &mut stopped => return,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(_) => continue,
            },
        };
        let (signer, log) = (signer.clone(), log.clone());
        let service = service_fn(move |request: Request<hyper::body::Incoming>| {
            let response = answer(&signer, &log, &request);
            async move { Ok::<_, Infallible>(response) }
        });
        tokio::spawn(hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), service));
    }
}

fn answer(
    signer: &Signer,
    log: &Mutex<Vec<String>>,
    request: &Request<hyper::body::Incoming>,
) -> Response<Full<Bytes>> {
    let user = basic_user(request, &signer.login);
    log.lock().unwrap_or_else(|p| p.into_inner()).push(user.clone().unwrap_or_else(|| "-".to_owned()));
    let Some(user) = user else {
        let mut refused = Response::new(Full::new(Bytes::from_static(br#"{"details":"wrong or missing login"}"#)));
        *refused.status_mut() = StatusCode::UNAUTHORIZED;
        return refused;
    };
    let query = request.uri().query().unwrap_or_default();
    let scopes: Vec<String> = url::form_urlencoded::parse(query.as_bytes())
        .filter(|(key, _)| key == "scope")
        .map(|(_, v)| v.into_owned())
        .collect();
    let token = signer.token(&user, &scopes);
    Response::new(Full::new(Bytes::from(serde_json::json!({"token": token, "expires_in": 300}).to_string())))
}

/// The user, when the request carries the service's login.
fn basic_user(request: &Request<hyper::body::Incoming>, login: &(String, String)) -> Option<String> {
    let header = request.headers().get(hyper::header::AUTHORIZATION)?.to_str().ok()?;
    let decoded = STANDARD.decode(header.strip_prefix("Basic ")?).ok()?;
    let (user, password) = std::str::from_utf8(&decoded).ok()?.split_once(':')?;
    (user == login.0 && password == login.1).then(|| user.to_owned())
}

impl Signer {
    /// A JWT granting `user` the actions each `type:name:actions` scope asks for.
    fn token(&self, user: &str, scopes: &[String]) -> String {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        let access: Vec<serde_json::Value> = scopes
            .iter()
            .filter_map(|scope| {
                let (kind, rest) = scope.split_once(':')?;
                let (name, actions) = rest.rsplit_once(':')?;
                Some(serde_json::json!({"type": kind, "name": name, "actions": actions.split(',').collect::<Vec<_>>()}))
            })
            .collect();
        let header = serde_json::json!({"alg": "EdDSA", "typ": "JWT", "x5c": [STANDARD.encode(&self.certificate)]});
        let claims = serde_json::json!({
            "iss": TOKEN_ISSUER, "sub": user, "aud": TOKEN_AUDIENCE,
            "exp": now + 300, "nbf": now.saturating_sub(10), "iat": now,
            "jti": format!("token-{}", self.issued.fetch_add(1, Ordering::SeqCst)),
            "access": access,
        });
        let signing_input =
            format!("{}.{}", URL_SAFE_NO_PAD.encode(header.to_string()), URL_SAFE_NO_PAD.encode(claims.to_string()));
        let signature = self.key.sign(signing_input.as_bytes()).unwrap_or_default();
        format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(signature))
    }
}

/// What a registry needs to send clients to a token service and to trust
/// its tokens.
#[derive(Clone, Debug)]
pub struct TokenAuth {
    pub realm: String,
    pub certificate: PathBuf,
}

impl TokenAuth {
    /// The `auth.token` section of a registry config.
    pub(crate) fn registry_config(&self) -> String {
        format!(
            "auth:\n  token:\n    realm: {}\n    service: {TOKEN_AUDIENCE}\n    issuer: {TOKEN_ISSUER}\n    rootcertbundle: {}\n",
            self.realm,
            self.certificate.display()
        )
    }
}
