//! The sat mint's Lightning backend is chosen in configuration: `fake` (default) or an LND node.
//! The configuration path is real: an LND backend whose files are missing refuses to start,
//! naming the problem and the setting; one whose node cannot be reached issues no invoice.
#![allow(missing_docs, clippy::unwrap_used)]

use ehash_satmint::{Config, Lightning, SatMint};

fn parse(toml_text: &str) -> Config {
    toml::from_str(toml_text).unwrap()
}

#[test]
fn the_backend_is_chosen_in_the_configuration_file() {
    assert_eq!(parse("").lightning, Lightning::Fake);
    assert_eq!(parse("lightning = \"fake\"").lightning, Lightning::Fake);
    let c = parse(
        "[lightning.lnd]\naddress = \"https://127.0.0.1:10009\"\ncert_file = \"/etc/lnd/tls.cert\"\nmacaroon_file = \"/etc/lnd/admin.macaroon\"\n",
    );
    assert_eq!(
        c.lightning,
        Lightning::Lnd { address: "https://127.0.0.1:10009".into(), cert_file: "/etc/lnd/tls.cert".into(), macaroon_file: "/etc/lnd/admin.macaroon".into() }
    );
    // a backend we do not support is refused when the file is read
    let err = toml::from_str::<Config>("[lightning.cln]\nrpc_path = \"/x\"\n").unwrap_err().to_string();
    assert!(err.contains("unknown variant") && err.contains("lnd"), "{err}");
}

#[tokio::test]
async fn an_lnd_backend_that_cannot_be_set_up_stops_the_mint_from_starting() {
    let dir = tempfile::tempdir().unwrap();
    let base = Config { data_dir: dir.path().join("mint"), listen: "127.0.0.1:0".parse().unwrap(), ..Default::default() };
    // missing certificate
    let c = Config {
        lightning: Lightning::Lnd { address: "https://127.0.0.1:1".into(), cert_file: dir.path().join("tls.cert"), macaroon_file: dir.path().join("admin.macaroon") },
        ..base.clone()
    };
    let err = SatMint::start(&c).await.unwrap_err().to_string();
    assert!(err.contains("lnd") && err.contains("certificate") && err.contains("sat_mint.lightning"), "{err}");
    // files present, but no node at the address: the mint serves, and asking for an invoice
    // fails (nothing is issued) instead of pretending
    std::fs::write(dir.path().join("tls.cert"), "-----BEGIN CERTIFICATE-----\nnot a certificate\n-----END CERTIFICATE-----\n").unwrap();
    std::fs::write(dir.path().join("admin.macaroon"), [1u8, 2, 3]).unwrap();
    let m = SatMint::start(&c).await.unwrap();
    let r = bitreq::post(format!("{}/v1/mint/quote/bolt11", m.url()))
        .with_header("content-type", "application/json")
        .with_body("{\"amount\":100,\"unit\":\"sat\"}")
        .with_timeout(30)
        .send_async()
        .await
        .unwrap();
    assert_ne!(r.status_code, 200, "{}", r.as_str().unwrap_or(""));
    m.shutdown().await;
    // the fake backend starts on the same data directory
    let m = SatMint::start(&base).await.unwrap();
    m.shutdown().await;
}
