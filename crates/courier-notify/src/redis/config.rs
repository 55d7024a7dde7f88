//! Redis connection strings: seed 000's forms, read into a [`RedisConfig`].
//!
//! ```text
//! redis://[[username]:password@]host[:port][,host[:port]...][/db][?option=value&...]
//! rediss://...                      TLS (rustls), verified against the system's roots
//!                                   or the CA file given by ?ssl_ca_certs=/path/ca.pem
//! ```
//!
//! Several hosts (`redis://node1:6379,node2:6379`) are an ordered failover list: the
//! notifier connects to the first one that answers, on every (re)connection. That
//! is also right for Redis Cluster: classic pub/sub (PUBLISH/SUBSCRIBE, not the
//! sharded SPUBLISH) is broadcast to every node of a cluster, so one connection to
//! any node hears every channel. Redis Sentinel (`redis+sentinel://...`, or the
//! seed's `redis://sentinel-host:26379/mymaster`) is refused with an error that
//! says so: point Courier at the master, or list the nodes.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use percent_encoding::percent_decode_str;
use thiserror::Error;

/// The port used when a host names none.
pub const DEFAULT_REDIS_PORT: u16 = 6379;

/// One Redis server.
///
/// ```
/// use courier_notify::RedisNode;
/// let node = RedisNode { host: "cache.internal".into(), port: 6380 };
/// assert_eq!(node.to_string(), "cache.internal:6380");
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RedisNode {
    /// Host name or IP address (an IPv6 address without brackets).
    pub host: String,
    /// TCP port.
    pub port: u16,
}

impl fmt::Display for RedisNode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

/// TLS settings of a `rediss://` connection.
///
/// ```
/// use courier_notify::RedisConfig;
/// let config: RedisConfig = "rediss://cache:6380?ssl_ca_certs=/etc/courier/ca.pem".parse().unwrap();
/// let tls = config.tls.unwrap();
/// assert_eq!(tls.ca_file.unwrap().to_str(), Some("/etc/courier/ca.pem"));
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RedisTls {
    /// PEM file of the certificate authorities to trust instead of the system's.
    pub ca_file: Option<PathBuf>,
}

/// Where and how to reach Redis, read from seed 000's connection strings:
///
/// ```text
/// redis://[[username]:password@]host[:port][,host[:port]...][/db][?option=value&...]
/// rediss://...    TLS (rustls), verified against the system's roots, or against the
///                 CA file given by ?ssl_ca_certs=/path/ca.pem
/// ```
///
/// Options: `db=N` (same as `/N`), `ssl_ca_certs=PATH`, `ssl_cert_reqs=required`
/// (certificates are always verified; `none` is refused). Anything else is an error.
///
/// Several hosts (`redis://node1:6379,node2:6379`) are an ordered failover list: the
/// notifier connects to the first one that answers, on every (re)connection. That
/// is also right for Redis Cluster: classic pub/sub (PUBLISH/SUBSCRIBE, not the
/// sharded SPUBLISH) is broadcast to every node of a cluster, so one connection to
/// any node hears every channel. Redis Sentinel (`redis+sentinel://...`, or the
/// seed's `redis://sentinel-host:26379/mymaster`) is refused with an error that
/// says so: point Courier at the master, or list the nodes.
///
/// ```
/// use courier_notify::{RedisConfig, RedisNode};
/// let config: RedisConfig = "redis://app:s%40cret@node1:6379,node2/2".parse().unwrap();
/// assert_eq!(
///     config.nodes,
///     vec![
///         RedisNode { host: "node1".into(), port: 6379 },
///         RedisNode { host: "node2".into(), port: 6379 },
///     ]
/// );
/// assert_eq!(config.username.as_deref(), Some("app"));
/// assert_eq!(config.password.as_deref(), Some("s@cret"));
/// assert_eq!(config.db, 2);
/// assert!(config.tls.is_none());
/// // Shown without the password:
/// assert_eq!(config.to_string(), "redis://app:***@node1:6379,node2:6379/2");
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct RedisConfig {
    /// The servers, in failover order (at least one).
    pub nodes: Vec<RedisNode>,
    /// ACL user name (Redis 6+); `None` for the default user.
    pub username: Option<String>,
    /// Password (`AUTH`).
    pub password: Option<String>,
    /// Database number (`SELECT`; pub/sub itself is not per database).
    pub db: u32,
    /// TLS, for `rediss://`.
    pub tls: Option<RedisTls>,
}

impl fmt::Debug for RedisConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisConfig")
            .field("nodes", &self.nodes)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "***"))
            .field("db", &self.db)
            .field("tls", &self.tls)
            .finish()
    }
}

impl fmt::Display for RedisConfig {
    /// The connection string, with the password masked.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.tls.is_some() { "rediss://" } else { "redis://" })?;
        match (&self.username, &self.password) {
            (Some(user), _) => write!(f, "{user}:***@")?,
            (None, Some(_)) => f.write_str(":***@")?,
            (None, None) => {}
        }
        for (i, node) in self.nodes.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{node}")?;
        }
        if self.db != 0 {
            write!(f, "/{}", self.db)?;
        }
        Ok(())
    }
}

/// Why a Redis connection string was refused.
///
/// ```
/// use courier_notify::{RedisConfig, RedisUrlError};
/// let err = RedisConfig::parse("redis://sentinel-host:26379/mymaster").unwrap_err();
/// assert!(matches!(err, RedisUrlError::Sentinel { .. }));
/// let err = RedisConfig::parse("redis://:hunter2@host:port").unwrap_err();
/// assert!(matches!(err, RedisUrlError::Invalid { .. }));
/// assert!(!err.to_string().contains("hunter2"));
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum RedisUrlError {
    /// Not a `redis://` or `rediss://` URL.
    #[error("{url:?} is not a Redis URL: it must start with redis:// or rediss://")]
    NotRedis {
        /// The URL, password masked.
        url: String,
    },
    /// A Redis Sentinel address.
    #[error(
        "{url:?} looks like a Redis Sentinel address ({why}); Sentinel is not supported by Courier's \
         Redis notifier: give the master's address, or list the nodes in failover order \
         (redis://node1:6379,node2:6379)"
    )]
    Sentinel {
        /// The URL, password masked.
        url: String,
        /// What gave it away.
        why: String,
    },
    /// Malformed.
    #[error("invalid Redis URL {url:?}: {reason}")]
    Invalid {
        /// The URL, password masked.
        url: String,
        /// What is wrong.
        reason: String,
    },
}

impl FromStr for RedisConfig {
    type Err = RedisUrlError;

    fn from_str(url: &str) -> Result<Self, Self::Err> {
        RedisConfig::parse(url)
    }
}

impl RedisConfig {
    /// One server, no password, database 0, no TLS.
    pub fn new(host: impl Into<String>, port: u16) -> Self {
        RedisConfig {
            nodes: vec![RedisNode {
                host: host.into(),
                port,
            }],
            username: None,
            password: None,
            db: 0,
            tls: None,
        }
    }

    /// Reads a connection string (the forms are listed under [`RedisConfig`]).
    pub fn parse(url: &str) -> Result<Self, RedisUrlError> {
        let url = url.trim();
        let shown = mask_password(url);
        let invalid = |reason: String| RedisUrlError::Invalid {
            url: shown.clone(),
            reason,
        };
        let sentinel = |why: &str| RedisUrlError::Sentinel {
            url: shown.clone(),
            why: why.to_string(),
        };
        let Some((scheme, rest)) = url.split_once("://") else {
            return Err(RedisUrlError::NotRedis { url: shown });
        };
        let scheme = scheme.to_ascii_lowercase();
        let tls = match scheme.as_str() {
            "redis" => false,
            "rediss" => true,
            s if s.contains("sentinel") => return Err(sentinel("its scheme is a sentinel scheme")),
            s if s.contains("unix") => {
                return Err(invalid("Unix sockets are not supported; use redis://host:port".into()));
            }
            _ => return Err(RedisUrlError::NotRedis { url: shown }),
        };
        if rest.contains('#') {
            return Err(invalid("fragments (#...) are not supported".into()));
        }
        let (rest, query) = match rest.split_once('?') {
            Some((rest, query)) => (rest, Some(query)),
            None => (rest, None),
        };
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i + 1..]),
            None => (rest, ""),
        };
        let (userinfo, hosts) = match authority.rsplit_once('@') {
            Some((userinfo, hosts)) => (Some(userinfo), hosts),
            None => (None, authority),
        };

        let (username, password) = match userinfo {
            None => (None, None),
            Some(userinfo) => {
                let (user, password) = match userinfo.split_once(':') {
                    Some((user, password)) => (user, Some(password)),
                    None => (userinfo, None),
                };
                let user = decode(user).map_err(|e| invalid(format!("user name: {e}")))?;
                let password = password
                    .map(decode)
                    .transpose()
                    .map_err(|e| invalid(format!("password: {e}")))?;
                let user = Some(user).filter(|u| !u.is_empty());
                let password = password.filter(|p| !p.is_empty());
                if user.is_some() && password.is_none() {
                    return Err(invalid(
                        "a user name needs a password: redis://user:password@host".into(),
                    ));
                }
                (user, password)
            }
        };

        let mut nodes = Vec::new();
        for host in hosts.split(',') {
            nodes.push(parse_node(host.trim()).map_err(&invalid)?);
        }

        let mut db: Option<u32> = None;
        let path = path.trim_end_matches('/');
        if !path.is_empty() {
            match path.parse::<u32>() {
                Ok(n) => db = Some(n),
                Err(_) if path.chars().all(|c| c.is_ascii_digit()) => {
                    return Err(invalid(format!("database number {path} is out of range")));
                }
                Err(_) => {
                    return Err(sentinel(&format!(
                        "its path {path:?} is not a database number, as in the seed's redis://sentinel-host:26379/mymaster"
                    )));
                }
            }
        }

        let mut ca_file = None;
        for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            let value = decode(value).map_err(|e| invalid(format!("option {key}: {e}")))?;
            match key {
                "db" => {
                    let n: u32 = value
                        .parse()
                        .map_err(|_| invalid(format!("db={value:?} is not a database number")))?;
                    if db.is_some_and(|d| d != n) {
                        return Err(invalid("the database is given twice, differently".into()));
                    }
                    db = Some(n);
                }
                "ssl_ca_certs" if tls => ca_file = Some(PathBuf::from(value)),
                "ssl_ca_certs" | "ssl_cert_reqs" if !tls => {
                    return Err(invalid(format!("{key} needs TLS: use rediss://")));
                }
                "ssl_cert_reqs" => match value.as_str() {
                    "required" => {}
                    _ => {
                        return Err(invalid(format!(
                            "ssl_cert_reqs={value} is not supported: certificates are always verified; \
                             trust a private CA with ssl_ca_certs=/path/ca.pem"
                        )));
                    }
                },
                s if s.contains("sentinel") || s == "service_name" || s == "master_name" => {
                    return Err(sentinel(&format!("it has the option {key:?}")));
                }
                _ => {
                    return Err(invalid(format!(
                        "unknown option {key:?} (known: db, ssl_ca_certs, ssl_cert_reqs)"
                    )));
                }
            }
        }

        Ok(RedisConfig {
            nodes,
            username,
            password,
            db: db.unwrap_or(0),
            tls: tls.then_some(RedisTls { ca_file }),
        })
    }
}

fn parse_node(text: &str) -> Result<RedisNode, String> {
    if text.is_empty() {
        return Err("a host is missing (empty host, or a stray comma)".into());
    }
    let (host, port) = if let Some(rest) = text.strip_prefix('[') {
        let (host, after) = rest
            .split_once(']')
            .ok_or_else(|| format!("{text:?}: an IPv6 address needs its closing ]"))?;
        match after {
            "" => (host, None),
            _ => match after.strip_prefix(':') {
                Some(port) => (host, Some(port)),
                None => return Err(format!("{text:?}: expected :port after ]")),
            },
        }
    } else {
        match text.split_once(':') {
            Some((host, port)) => {
                if port.contains(':') {
                    return Err(format!("{text:?}: write IPv6 addresses in brackets, [::1]:6379"));
                }
                (host, Some(port))
            }
            None => (text, None),
        }
    };
    if host.is_empty() {
        return Err(format!("{text:?}: the host name is empty"));
    }
    if host.chars().any(|c| c.is_whitespace() || c == '/' || c == '@') {
        return Err(format!("{text:?} is not a host name"));
    }
    let port = match port {
        None => DEFAULT_REDIS_PORT,
        Some(port) => match port.parse::<u16>() {
            Ok(p) if p != 0 => p,
            _ => return Err(format!("{text:?}: {port:?} is not a port number")),
        },
    };
    Ok(RedisNode {
        host: host.to_string(),
        port,
    })
}

fn decode(text: &str) -> Result<String, String> {
    percent_decode_str(text)
        .decode_utf8()
        .map(|s| s.into_owned())
        .map_err(|_| "not valid UTF-8 once percent-decoded".to_string())
}

/// `url` with the password (between `user:` and the last `@` of the authority) masked.
pub(crate) fn mask_password(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let authority = &rest[..end];
    match authority.rsplit_once('@') {
        Some((userinfo, hosts)) => {
            let user = userinfo.split_once(':').map(|(u, _)| u);
            let masked = match user {
                Some(user) => format!("{user}:***"),
                None => "***".to_string(),
            };
            format!("{scheme}://{masked}@{hosts}{}", &rest[end..])
        }
        None => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(host: &str, port: u16) -> RedisNode {
        RedisNode {
            host: host.into(),
            port,
        }
    }

    #[test]
    fn seed_000_forms_parse() {
        let c = RedisConfig::parse("redis://localhost:6379").unwrap();
        assert_eq!(
            (c.nodes.clone(), c.db, c.password.clone()),
            (vec![node("localhost", 6379)], 0, None)
        );

        let c = RedisConfig::parse("redis://:password@localhost:6379").unwrap();
        assert_eq!((c.username.clone(), c.password.as_deref()), (None, Some("password")));

        let c = RedisConfig::parse("redis://localhost:6379/1").unwrap();
        assert_eq!(c.db, 1);

        let c = RedisConfig::parse("redis://node1:6379,node2:6379,node3:6379").unwrap();
        assert_eq!(
            c.nodes,
            vec![node("node1", 6379), node("node2", 6379), node("node3", 6379)]
        );

        let c = RedisConfig::parse("rediss://localhost:6379").unwrap();
        assert_eq!(c.tls, Some(RedisTls { ca_file: None }));
    }

    #[test]
    fn user_password_db_and_options_parse() {
        let c = RedisConfig::parse("redis://user:p%3Ass@host/3").unwrap();
        assert_eq!(c.username.as_deref(), Some("user"));
        assert_eq!(c.password.as_deref(), Some("p:ss"));
        assert_eq!(c.nodes, vec![node("host", 6379)]);
        assert_eq!(c.db, 3);
        let c = RedisConfig::parse("redis://host?db=4").unwrap();
        assert_eq!(c.db, 4);
        let c = RedisConfig::parse("redis://[::1]:7000,127.0.0.1").unwrap();
        assert_eq!(c.nodes, vec![node("::1", 7000), node("127.0.0.1", 6379)]);
        let c = RedisConfig::parse("rediss://h?ssl_ca_certs=%2Ftmp%2Fca.pem&ssl_cert_reqs=required").unwrap();
        assert_eq!(c.tls.unwrap().ca_file, Some(PathBuf::from("/tmp/ca.pem")));
        let c = RedisConfig::parse("REDIS://h/").unwrap();
        assert_eq!(c.db, 0);
    }

    #[test]
    fn sentinel_forms_are_refused_clearly() {
        for url in [
            "redis://sentinel-host:26379/mymaster",
            "redis+sentinel://sentinel-host:26379/mymaster",
            "rediss+sentinel://h",
            "redis://h?sentinel_master=mymaster",
        ] {
            let err = RedisConfig::parse(url).unwrap_err();
            assert!(matches!(err, RedisUrlError::Sentinel { .. }), "{url}: {err}");
            assert!(err.to_string().contains("Sentinel is not supported"), "{err}");
        }
    }

    #[test]
    fn malformed_urls_are_refused_clearly() {
        let cases = [
            ("localhost:6379", "must start with redis://"),
            ("http://localhost", "must start with redis://"),
            ("redis://", "host is missing"),
            ("redis://a,,b", "host is missing"),
            ("redis://host:notaport", "not a port number"),
            ("redis://host:0", "not a port number"),
            ("redis://host:70000", "not a port number"),
            ("redis://::1:6379", "brackets"),
            ("redis://[::1", "closing ]"),
            ("redis://host/99999999999", "out of range"),
            ("redis://user@host", "needs a password"),
            ("redis://host?foo=bar", "unknown option"),
            ("redis://host?ssl_ca_certs=/x", "needs TLS"),
            ("rediss://host?ssl_cert_reqs=none", "always verified"),
            ("redis://host#frag", "fragments"),
            ("redis://host?db=x", "not a database number"),
            ("redis+unix:///tmp/redis.sock", "Unix sockets"),
        ];
        for (url, expected) in cases {
            let err = RedisConfig::parse(url).unwrap_err().to_string();
            assert!(err.contains(expected), "{url}: {err}");
        }
    }

    #[test]
    fn passwords_never_show() {
        let err = RedisConfig::parse("redis://user:hunter2@host:bad")
            .unwrap_err()
            .to_string();
        assert!(!err.contains("hunter2"), "{err}");
        let c = RedisConfig::parse("redis://:hunter2@host").unwrap();
        assert!(!format!("{c} {c:?}").contains("hunter2"));
        assert_eq!(mask_password("redis://:pw@h/1"), "redis://:***@h/1");
        assert_eq!(mask_password("redis://u:pw@h"), "redis://u:***@h");
        assert_eq!(mask_password("redis://h"), "redis://h");
    }
}
