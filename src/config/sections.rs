//! The small sections: `[store]`, `[email]`, `[api]`, `[[maintenance]]`.

use std::time::Duration;

use super::*;

impl Validator {
    pub(super) fn store(&mut self, value: Option<toml::Value>) -> Option<StoreConfig> {
        let raw = match value {
            None => RawStore {
                url: Some(DEFAULT_STORE_URL.to_string()),
                url_env: None,
                password_env: None,
                lease_ttl_seconds: None,
            },
            Some(v) => self.element::<RawStore>("store", v)?,
        };
        let url = match (&raw.url, &raw.url_env) {
            (Some(url), None) => SecretUrl::Literal(url.clone()),
            (None, Some(var)) => {
                let Ok(url) = std::env::var(var) else {
                    self.problem(
                        "store.url_env",
                        format!("environment variable `{var}` is not set"),
                    );
                    return None;
                };
                if !is_postgres_url(url.trim()) {
                    self.problem(
                        "store.url_env",
                        "expected the variable to hold a `postgres://` URL",
                    );
                    return None;
                }
                SecretUrl::Env(var.clone())
            }
            (Some(_), Some(_)) => {
                self.problem("store.url", "give `url` or `url_env`, not both");
                return None;
            }
            (None, None) => {
                self.problem("store.url", "expected `sqlite://PATH` or `postgres://…`");
                return None;
            }
        };
        if let SecretUrl::Literal(url) = &url
            && let Some(rest) = url
                .strip_prefix("sqlite://")
                .or_else(|| url.strip_prefix("sqlite:"))
        {
            let rest = rest.split('?').next().unwrap_or(rest);
            if rest.is_empty() {
                self.problem("store.url", "expected a file path after `sqlite://`");
                return None;
            }
            for key in [
                ("password_env", raw.password_env.is_some()),
                ("lease_ttl_seconds", raw.lease_ttl_seconds.is_some()),
            ]
            .iter()
            .filter(|k| k.1)
            {
                self.problem(
                    format!("store.{}", key.0),
                    "only a PostgreSQL store takes it (a SQLite history has one `run`)",
                );
            }
            return Some(StoreConfig::sqlite(self.dir.join(rest)));
        }
        if let SecretUrl::Literal(url) = &url {
            if !is_postgres_url(url) {
                let scheme = url.split(':').next().unwrap_or("");
                self.problem(
                    "store.url",
                    format!("expected `sqlite://PATH` or `postgres://…`, found `{scheme}:`"),
                );
                return None;
            }
            if has_password(url) {
                self.problem(
                    "store.url",
                    "the URL holds a password: keep it out of the file (`password_env`, or the whole URL in `url_env`)",
                );
                return None;
            }
        }
        if let Some(var) = &raw.password_env
            && std::env::var_os(var).is_none()
        {
            self.problem(
                "store.password_env",
                format!("environment variable `{var}` is not set"),
            );
            return None;
        }
        let lease_ttl = match raw.lease_ttl_seconds {
            None => DEFAULT_LEASE_TTL,
            Some(s) if (3..=3_600).contains(&s) => Duration::from_secs(s),
            Some(s) => {
                self.problem(
                    "store.lease_ttl_seconds",
                    format!("expected seconds from 3 to 3600, found {s}"),
                );
                return None;
            }
        };
        Some(StoreConfig {
            backend: StoreBackend::Postgres(PostgresStore {
                url,
                password_env: raw.password_env,
                lease_ttl,
            }),
        })
    }

    pub(super) fn email(&mut self, value: toml::Value) -> Option<EmailConfig> {
        let raw = self.element::<RawEmail>("email", value)?;
        let mut ok = true;
        let tls = match raw.tls.as_str() {
            "none" => TlsMode::None,
            "starttls" => TlsMode::StartTls,
            "tls" => TlsMode::Tls,
            other => {
                self.problem(
                    "email.tls",
                    format!("expected \"none\", \"starttls\" or \"tls\", found \"{other}\""),
                );
                ok = false;
                TlsMode::None
            }
        };
        if raw.smtp_host.trim().is_empty() {
            self.problem("email.smtp_host", "expected a host name");
            ok = false;
        }
        let from = match raw.from.parse::<lettre::message::Mailbox>() {
            Ok(m) => Some(m),
            Err(_) => {
                self.problem(
                    "email.from",
                    format!(
                        "expected an address like `haltwatch <alerts@example.org>`, found `{}`",
                        raw.from
                    ),
                );
                None
            }
        };
        if let Some(var) = &raw.password_env {
            if std::env::var_os(var).is_none() {
                self.problem(
                    "email.password_env",
                    format!("environment variable `{var}` is not set"),
                );
                ok = false;
            }
            if raw.username.is_none() {
                self.problem("email.username", "password_env needs a username");
                ok = false;
            }
        }
        if raw.max_per_hour == 0 {
            self.problem("email.max_per_hour", "expected at least 1");
            ok = false;
        }
        if raw.timeout_seconds == 0 {
            self.problem("email.timeout_seconds", "expected at least 1");
            ok = false;
        }
        let ca_pem = raw.ca_file.as_ref().and_then(|file| {
            let path = self.dir.join(file);
            let problem = match std::fs::read(&path) {
                // lettre accepts a file without certificates; an empty trust
                // list would fail only at the first mail.
                Ok(pem)
                    if pem.windows(27).any(|w| w == b"-----BEGIN CERTIFICATE-----")
                        && lettre::transport::smtp::client::Certificate::from_pem(&pem).is_ok() =>
                {
                    return Some(pem);
                }
                Ok(_) => format!("{} holds no PEM certificate", path.display()),
                Err(e) => format!("cannot read {}: {e}", path.display()),
            };
            self.problem("email.ca_file", problem);
            ok = false;
            None
        });
        let from = from.filter(|_| ok)?;
        Some(EmailConfig {
            smtp_host: raw.smtp_host,
            smtp_port: raw.smtp_port,
            tls,
            username: raw.username,
            password_env: raw.password_env,
            from,
            group_wait: Duration::from_secs(raw.group_wait_seconds),
            max_per_hour: raw.max_per_hour,
            retry_initial: Duration::from_millis(raw.retry_initial_ms.max(1)),
            timeout: Duration::from_secs(raw.timeout_seconds),
            ca_pem,
        })
    }

    pub(super) fn api(&mut self, value: toml::Value) -> Option<ApiConfig> {
        let raw = self.element::<RawApi>("api", value)?;
        let listen = match raw.listen.parse() {
            Ok(a) => a,
            Err(_) => {
                self.problem(
                    "api.listen",
                    format!(
                        "expected an address like 127.0.0.1:9464, found `{}`",
                        raw.listen
                    ),
                );
                return None;
            }
        };
        if let Some(var) = &raw.token_env
            && std::env::var(var).map_or(true, |t| t.is_empty())
        {
            self.problem(
                "api.token_env",
                format!("environment variable `{var}` is not set (or empty)"),
            );
            return None;
        }
        let public_url = match raw.public_url {
            Some(u) => Some(self.web_url("api.public_url", u)?),
            None => None,
        };
        Some(ApiConfig {
            listen,
            token_env: raw.token_env,
            public_status_page: raw.public_status_page,
            metrics_token: raw.metrics_token,
            public_url: public_url.map(|u| u.trim_end_matches('/').to_string()),
        })
    }

    /// A link for people: an http(s) URL with a host, as written.
    pub(super) fn web_url(&mut self, key: &str, url: String) -> Option<String> {
        if super::parse::is_web_url(&url) {
            Some(url)
        } else {
            self.problem(
                key,
                format!("expected an http(s) URL like https://example.org/runbook, found `{url}`"),
            );
            None
        }
    }

    pub(super) fn maintenance(
        &mut self,
        value: Option<toml::Value>,
        protocols: &[ProtocolConfig],
    ) -> Vec<MaintenanceWindow> {
        let mut out = Vec::new();
        for (i, item) in self.array("maintenance", value).into_iter().enumerate() {
            let key = format!("maintenance[{i}]");
            let Some(raw) = self.element::<RawMaintenance>(&key, item) else {
                continue;
            };
            let protocol = protocols.iter().position(|p| p.name == raw.protocol);
            if protocol.is_none() {
                self.problem(
                    format!("{key}.protocol"),
                    format!("no protocol named `{}`", raw.protocol),
                );
            }
            let mut time = |field: &str, s: &str| match parse_rfc3339(s) {
                Some(t) => Some(t),
                None => {
                    self.problem(
                        format!("{key}.{field}"),
                        format!("expected an RFC 3339 time like 2026-12-01T02:00:00Z, found `{s}`"),
                    );
                    None
                }
            };
            let (start, end) = (time("start", &raw.start), time("end", &raw.end));
            if let (Some(start), Some(end)) = (start, end)
                && end <= start
            {
                self.problem(format!("{key}.end"), "expected a time after start");
                continue;
            }
            if let (Some(protocol), Some(start), Some(end)) = (protocol, start, end) {
                out.push(MaintenanceWindow {
                    protocol,
                    start,
                    end,
                });
            }
        }
        out
    }
}

/// `postgres://…` or `postgresql://…`.
fn is_postgres_url(url: &str) -> bool {
    url.starts_with("postgres://") || url.starts_with("postgresql://")
}

/// Whether the URL's user info carries a password (`user:pw@`), or its
/// query does (`?password=`).
fn has_password(url: &str) -> bool {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let in_userinfo = authority
        .rsplit_once('@')
        .is_some_and(|(user, _)| user.contains(':'));
    in_userinfo || rest.to_ascii_lowercase().contains("password=")
}
