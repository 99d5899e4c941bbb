//! The central PostgreSQL as `--database` names it: the URL or libpq
//! `key=value` pairs, TLS, and connecting (for `forward` and for the
//! queries answered from it).
//!
//! tokio-postgres reads most of libpq's parameters but not `sslrootcert`
//! nor the `verify-ca` / `verify-full` modes; those are taken out here, so
//! a URL written for psql works as it is. TLS (rustls, ring) is used when
//! the URL asks for it (`sslmode=require`, `verify-ca`, `verify-full`),
//! and then the server's certificate is always verified, name included:
//! against `sslrootcert` (a PEM file) when given, else the system's
//! roots. That is libpq's `verify-full`; libpq's `require` alone would
//! accept any certificate, which stops no one in the middle. Without
//! such a mode (`prefer`, the default, or `disable`) the connection is
//! plain: use a Unix socket or a trusted network then.

use std::time::Duration;

use tokio_postgres::config::SslMode;
use tokio_postgres::{Client, Config, NoTls};
use tokio_postgres_rustls::MakeRustlsConnect;

use super::Fail;

/// Where and how to connect.
pub(super) struct Target {
    pub(super) config: Config,
    /// Set when the URL asks for TLS.
    tls: Option<MakeRustlsConnect>,
    /// `bound`'s limit: a session left idle in a transaction longer than
    /// twice this is ended by the server.
    limit: Option<Duration>,
}

/// Parses `--database`.
pub(super) fn target(url: &str) -> Result<Target, Fail> {
    let usage = |e: String| Fail(2, format!("joblogctl: --database: {e}"));
    let (rest, root_cert, verify) = take_libpq_extras(url);
    let mut config: Config = rest.parse().map_err(|e| usage(format!("{e}")))?;
    if verify {
        config.ssl_mode(SslMode::Require);
    }
    let tls = match config.get_ssl_mode() {
        SslMode::Require => Some(tls_config(root_cert.as_deref()).map_err(usage)?),
        _ => None,
    };
    Ok(Target {
        config,
        tls,
        limit: None,
    })
}

impl Target {
    /// Bounds what a lost network can hold up, unless the URL says
    /// otherwise: connecting, and data left unacknowledged
    /// (`tcp_user_timeout`), to `limit`; keepalive probes after 10 s idle,
    /// so a peer gone quiet is noticed between batches too.
    pub(super) fn bound(&mut self, limit: Duration) {
        self.limit = Some(limit);
        let c = &mut self.config;
        if c.get_connect_timeout().is_none() {
            c.connect_timeout(limit);
        }
        if c.get_tcp_user_timeout().is_none() {
            c.tcp_user_timeout(limit);
        }
        // (2 hours is the library's default: the URL did not set it.)
        if c.get_keepalives_idle() == Duration::from_secs(2 * 60 * 60) {
            c.keepalives_idle(Duration::from_secs(10).min(limit));
        }
    }

    /// Connects; the connection's own task runs on the current runtime.
    pub(super) async fn connect(&self) -> Result<Client, String> {
        let what = |e: tokio_postgres::Error| {
            // The library's message alone says "error performing TLS
            // handshake"; the cause (an unknown issuer, a name that does
            // not match) is in its sources.
            let mut text = format!("cannot connect to the central database: {e}");
            let mut source = std::error::Error::source(&e);
            while let Some(s) = source {
                text.push_str(&format!(": {s}"));
                source = s.source();
            }
            text
        };
        let (client, driver) = match &self.tls {
            Some(tls) => {
                let (c, conn) = self.config.connect(tls.clone()).await.map_err(what)?;
                (c, tokio::spawn(conn))
            }
            None => {
                let (c, conn) = self.config.connect(NoTls).await.map_err(what)?;
                (c, tokio::spawn(conn))
            }
        };
        tokio::spawn(async move {
            if let Ok(Err(e)) = driver.await {
                eprintln!("joblogctl: the central database connection ended: {e}");
            }
        });
        // A forwarder cut off by the network in the middle of a turn
        // leaves its session open in the transaction, holding the
        // checkpoint's row lock until TCP gives up (hours): the server
        // ends such a session after twice the limit instead.
        if let Some(limit) = self.limit {
            let ms = limit.as_millis().saturating_mul(2);
            client
                .batch_execute(&format!("SET idle_in_transaction_session_timeout = {ms}"))
                .await
                .map_err(|e| format!("cannot set up the session: {e}"))?;
        }
        Ok(client)
    }
}

/// Takes `sslrootcert=` out of the URL's query or the `key=value` pairs,
/// and turns `sslmode=verify-ca` / `verify-full` into `require` (TLS is
/// always verified here). Returns the rest, the root file, and whether a
/// verifying mode was asked for.
fn take_libpq_extras(url: &str) -> (String, Option<String>, bool) {
    let is_url = url.starts_with("postgres://") || url.starts_with("postgresql://");
    let (head, params, sep) = match (is_url, url.split_once('?')) {
        (true, Some((h, q))) => (format!("{h}?"), q.to_string(), '&'),
        (true, None) => return (url.to_string(), None, false),
        (false, _) => (String::new(), url.to_string(), ' '),
    };
    let mut root = None;
    let mut verify = false;
    let mut kept = Vec::new();
    for p in params.split(sep).filter(|p| !p.is_empty()) {
        match p.split_once('=') {
            Some(("sslrootcert", v)) => root = Some(percent_decoded(v)),
            Some(("sslmode", "verify-ca" | "verify-full")) => {
                verify = true;
                kept.push("sslmode=require".to_string());
            }
            _ => kept.push(p.to_string()),
        }
    }
    let joined = kept.join(&sep.to_string());
    let rest = match (is_url, joined.is_empty()) {
        (true, true) => head.trim_end_matches('?').to_string(),
        _ => format!("{head}{joined}"),
    };
    (rest, root, verify)
}

fn percent_decoded(v: &str) -> String {
    let b = v.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = |c: u8| (c as char).to_digit(16);
        match (
            b[i],
            b.get(i + 1).copied().and_then(hex),
            b.get(i + 2).copied().and_then(hex),
        ) {
            (b'%', Some(h), Some(l)) => {
                out.push((h * 16 + l) as u8);
                i += 3;
            }
            (c, _, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// rustls with the ring provider, trusting `root_cert` (PEM) if given,
/// else the system's roots.
fn tls_config(root_cert: Option<&str>) -> Result<MakeRustlsConnect, String> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    match root_cert {
        Some(path) if path != "system" => {
            let certs = CertificateDer::pem_file_iter(path)
                .map_err(|e| format!("sslrootcert {path}: {e}"))?;
            for cert in certs {
                let cert = cert.map_err(|e| format!("sslrootcert {path}: {e}"))?;
                roots
                    .add(cert)
                    .map_err(|e| format!("sslrootcert {path}: {e}"))?;
            }
        }
        _ => {
            let found = rustls_native_certs::load_native_certs();
            roots.add_parsable_certificates(found.certs);
        }
    }
    if roots.is_empty() {
        return Err(
            "TLS was asked for, but no root certificate was found to verify the \
                    server with: give one with sslrootcert=FILE"
                .into(),
        );
    }
    // ring rather than aws-lc-rs: no C library build of its own, a lean
    // tree. Its key exchange has no post-quantum group, which rustls now
    // flags; the central store's link is not where that matters first.
    #[allow(deprecated)]
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(MakeRustlsConnect::new(config))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn libpq_extras_are_taken_out_of_urls_and_pairs() {
        assert_eq!(
            take_libpq_extras(
                "postgresql://u@db/x?sslmode=verify-full&sslrootcert=%2Fetc%2Fca.pem&application_name=f"
            ),
            (
                "postgresql://u@db/x?sslmode=require&application_name=f".into(),
                Some("/etc/ca.pem".into()),
                true
            )
        );
        assert_eq!(
            take_libpq_extras("postgresql://u@db/x?sslrootcert=/ca.pem"),
            ("postgresql://u@db/x".into(), Some("/ca.pem".into()), false)
        );
        assert_eq!(
            take_libpq_extras("host=db user=u sslmode=verify-ca sslrootcert=/ca.pem"),
            (
                "host=db user=u sslmode=require".into(),
                Some("/ca.pem".into()),
                true
            )
        );
        assert_eq!(
            take_libpq_extras("postgresql://u@db/x"),
            ("postgresql://u@db/x".into(), None, false)
        );
    }
}
