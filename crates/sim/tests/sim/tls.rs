//! PrivX over HTTPS with the CA the simulator makes at start.

use reqwest::Method;
use runbook_sim::{PrivxSim, SimOptions};
use serde_json::json;

use crate::support::{privx_fixture, privx_login_with, send};

#[tokio::test]
async fn tls_mode_is_trusted_with_the_generated_ca_and_refused_without_it() {
    let sim = PrivxSim::start(
        privx_fixture(1),
        SimOptions {
            tls: true,
            ..SimOptions::default()
        },
    )
    .await
    .expect("starts with TLS");
    let base = sim.base_url();
    assert!(base.starts_with("https://localhost:"), "{base}");
    let pem = sim.ca_cert_pem().expect("a CA in TLS mode");
    assert!(pem.starts_with("-----BEGIN CERTIFICATE-----"));

    let ca = reqwest::Certificate::from_pem(pem.as_bytes()).expect("a PEM certificate");
    let trusting = reqwest::Client::builder()
        .add_root_certificate(ca)
        .build()
        .expect("a client");
    let token = privx_login_with(&trusting, &sim).await;
    let reply = send(
        trusting
            .request(Method::GET, format!("{base}/role-store/api/v1/users/u-0000"))
            .bearer_auth(&token),
    )
    .await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.json()["id"], json!("u-0000"));

    // The certificate also names 127.0.0.1, for clients that dial the address.
    let by_ip = format!("https://127.0.0.1:{}/role-store/api/v1/users/u-0000", sim.addr().port());
    assert_eq!(send(trusting.get(by_ip).bearer_auth(&token)).await.status, 200);

    let error = reqwest::Client::new()
        .get(format!("{base}/role-store/api/v1/users/u-0000"))
        .send()
        .await
        .expect_err("an unknown CA is not trusted");
    assert!(error.is_connect() || error.is_request(), "{error}");

    // A failed handshake leaves the server serving.
    assert_eq!(
        send(
            trusting
                .get(format!("{base}/role-store/api/v1/roles"))
                .bearer_auth(&token)
        )
        .await
        .status,
        200
    );
}
