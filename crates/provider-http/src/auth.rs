//! How a profile's requests are authenticated.

use hmac::{Hmac, Mac};
use runbook_core::http::HttpRequest;
use runbook_core::http::header::{HeaderName, HeaderValue};
use runbook_core::{ActionError, Secret};
use sha2::Sha256;

/// A profile's credential. Basic auth is kept as its finished `Authorization` header.
#[derive(Debug)]
pub enum Auth {
    /// `Authorization: Bearer <token>`.
    Bearer(Secret<String>),
    /// One header carrying the credential as it is (basic auth, an API key).
    Header {
        /// The header.
        name: HeaderName,
        /// Its value.
        value: Secret<String>,
    },
    /// HMAC-SHA256 of the exact body bytes sent (empty without a body), keyed with the secret,
    /// in lower-case hex, in this header.
    Hmac {
        /// The header carrying the signature.
        header: HeaderName,
        /// The key.
        secret: Secret<String>,
    },
}

impl Auth {
    /// The header this auth sets: a script may not set it itself.
    pub fn header(&self) -> HeaderName {
        match self {
            Auth::Bearer(_) => runbook_core::http::header::AUTHORIZATION,
            Auth::Header { name, .. } => name.clone(),
            Auth::Hmac { header, .. } => header.clone(),
        }
    }

    /// Adds the credential to a request whose body is `body`.
    pub fn apply(&self, request: HttpRequest, body: &[u8]) -> Result<HttpRequest, ActionError> {
        match self {
            Auth::Bearer(token) => request.bearer(token),
            Auth::Header { name, value } => request.secret_header(name.clone(), value),
            Auth::Hmac { header, secret } => {
                let signature = sign(secret, body)?;
                let value = HeaderValue::from_str(&signature)
                    .map_err(|_| ActionError::invalid_args("the signature cannot be sent in a header"))?;
                Ok(request.header(header.clone(), value))
            }
        }
    }
}

/// HMAC-SHA256 of `body` keyed with `secret`, lower-case hex.
pub fn sign(secret: &Secret<String>, body: &[u8]) -> Result<String, ActionError> {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.expose().as_bytes())
        .map_err(|_| ActionError::invalid_args("the hmac secret cannot key HMAC-SHA256"))?;
    mac.update(body);
    Ok(hex::encode(mac.finalize().into_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signature_is_rfc_4231_hmac_sha256_in_hex() {
        // RFC 4231, test case 2.
        let key = Secret::new("Jefe".to_owned());
        assert_eq!(
            sign(&key, b"what do ya want for nothing?").unwrap(),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }
}
