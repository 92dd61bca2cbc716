//! A client of the management HTTP API for tests: a real HTTP client (reqwest) against the
//! broker's management listener, with basic auth, answering the status and the JSON body.

use crate::TestBroker;
use serde_json::Value;

/// The API of one broker, called as one user.
pub struct Api {
    base: String,
    user: String,
    password: String,
    client: reqwest::Client,
}

/// An answer: the status and the body (JSON, or `Value::Null` when empty or not JSON).
#[derive(Debug)]
pub struct Answer {
    /// The HTTP status.
    pub status: u16,
    /// The parsed body.
    pub body: Value,
    /// The response headers.
    pub headers: reqwest::header::HeaderMap,
}

impl Api {
    /// The API of `broker` as its default user (guest).
    pub fn new(broker: &TestBroker) -> Api {
        Api::as_user(broker, broker.user(), broker.password())
    }

    /// The API of `broker` as `user`.
    pub fn as_user(broker: &TestBroker, user: &str, password: &str) -> Api {
        let addr = broker
            .server()
            .and_then(|s| s.management_addr())
            .expect("an in-process broker with the management API");
        Api {
            base: format!("http://{addr}"),
            user: user.to_string(),
            password: password.to_string(),
            client: reqwest::Client::new(),
        }
    }

    /// The API at `base` (`http://127.0.0.1:port`, e.g. a `pigeon` process's) as `user`.
    pub fn at(base: &str, user: &str, password: &str) -> Api {
        Api {
            base: base.to_string(),
            user: user.to_string(),
            password: password.to_string(),
            client: reqwest::Client::new(),
        }
    }

    /// The same API as another user.
    pub fn with_user(&self, user: &str, password: &str) -> Api {
        Api {
            base: self.base.clone(),
            user: user.to_string(),
            password: password.to_string(),
            client: self.client.clone(),
        }
    }

    /// The base URL (`http://127.0.0.1:port`).
    pub fn base(&self) -> &str {
        &self.base
    }

    /// Sends a request with a raw body (`None`: no body) and the caller's credentials.
    pub async fn raw(&self, method: &str, path: &str, body: Option<Vec<u8>>) -> Answer {
        let method = reqwest::Method::from_bytes(method.as_bytes()).expect("a method");
        let mut request = self
            .client
            .request(method, format!("{}{path}", self.base))
            .basic_auth(&self.user, Some(&self.password));
        if let Some(body) = body {
            request = request
                .header("content-type", "application/json")
                .body(body);
        }
        let response = crate::within("the management API's answer", request.send())
            .await
            .expect("an HTTP answer");
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let bytes = response.bytes().await.expect("the body");
        let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        Answer {
            status,
            body,
            headers,
        }
    }

    /// GET.
    pub async fn get(&self, path: &str) -> Answer {
        self.raw("GET", path, None).await
    }

    /// PUT with a JSON body.
    pub async fn put(&self, path: &str, body: Value) -> Answer {
        self.raw("PUT", path, Some(body.to_string().into_bytes()))
            .await
    }

    /// POST with a JSON body.
    pub async fn post(&self, path: &str, body: Value) -> Answer {
        self.raw("POST", path, Some(body.to_string().into_bytes()))
            .await
    }

    /// DELETE.
    pub async fn delete(&self, path: &str) -> Answer {
        self.raw("DELETE", path, None).await
    }
}
