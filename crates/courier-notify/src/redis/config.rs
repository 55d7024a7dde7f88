//! Redis connection strings: seed 000's forms, read into a [`RedisConfig`].
//!
//! ```text
//! redis://[[username]:password@]host[:port][,host[:port]...][/db][?option=value&...]
//! rediss://...                      TLS (rustls), verified against the system's roots
//!                                   or the CA file given by ?ssl_ca_certs=/path/ca.pem
//! redis+sentinel://[[username]:password@]host[:port][,host[:port]...]/master[/db][?option=value&...]
//! rediss+sentinel://...             the same, over TLS (sentinels and master alike)
//! redis://sentinel-host:26379/mymaster[/db]   the seed's Sentinel form
//! redis+cluster://[[username]:password@]host[:port][,host[:port]...][?option=value&...]
//! rediss+cluster://...              Redis Cluster, over TLS
//! ```
//!
//! `redis+cluster://` names seed nodes of a Redis Cluster: any one that answers
//! gives the slot map. Several hosts under plain `redis://` (database 0) are
//! asked, when first dialled, whether they are a cluster (`INFO cluster` on the
//! first that answers: `cluster_enabled:1`); if they are, they are seeds too,
//! otherwise they are an ordered failover list: every (re)connection goes to the
//! first one that answers.
//!
//! Redis Sentinel: the hosts are sentinels (port 26379 unless given), asked in order
//! where the master named in the path is; the user and password are the master's,
//! and `?sentinel_username=`/`?sentinel_password=` the sentinels' own, if they have
//! any. A `redis://` or `rediss://` URL whose first path segment is not a number
//! names a master, so it is a Sentinel URL too (the seed's
//! `redis://sentinel-host:26379/mymaster`); a number there is a database.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, percent_decode_str, utf8_percent_encode};
use thiserror::Error;

/// The port used when a host names none.
pub const DEFAULT_REDIS_PORT: u16 = 6379;

/// The port used when a sentinel's host names none.
pub const DEFAULT_SENTINEL_PORT: u16 = 26379;

/// What a master name keeps unencoded when a config is shown as a URL.
const NAME_SAFE: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'_').remove(b'.');
/// ... and what a file path keeps.
const PATH_SAFE: &AsciiSet = &NAME_SAFE.remove(b'/');

/// One Redis server.
///
/// ```
/// use courier_notify::RedisNode;
/// let node = RedisNode { host: "cache.internal".into(), port: 6380 };
/// assert_eq!(node.to_string(), "cache.internal:6380");
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
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

/// Redis Sentinel: the master to ask the sentinels for, and the sentinels' own
/// credentials (the [`RedisConfig`]'s user and password are the master's).
///
/// ```
/// use courier_notify::RedisConfig;
/// let config: RedisConfig =
///     "redis+sentinel://:data-pw@s1,s2:26380/mymaster?sentinel_password=s-pw".parse().unwrap();
/// let sentinel = config.sentinel.as_ref().unwrap();
/// assert_eq!(sentinel.master, "mymaster");
/// assert_eq!(sentinel.password.as_deref(), Some("s-pw"));
/// assert_eq!(config.password.as_deref(), Some("data-pw"));
/// assert_eq!(config.nodes[0].port, 26379);
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct RedisSentinel {
    /// The master's name, as the sentinels monitor it (`mymaster`).
    pub master: String,
    /// The sentinels' ACL user (`?sentinel_username=`); `None` for the default user.
    pub username: Option<String>,
    /// The sentinels' password (`?sentinel_password=`); `None` if they ask for none.
    pub password: Option<String>,
}

impl fmt::Debug for RedisSentinel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisSentinel")
            .field("master", &self.master)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "***"))
            .finish()
    }
}

/// Whether a [`RedisConfig`]'s nodes are a Redis Cluster.
///
/// ```
/// use courier_notify::{RedisClusterMode, RedisConfig};
/// let mode = |url: &str| RedisConfig::parse(url).unwrap().cluster;
/// assert_eq!(mode("redis+cluster://n1:7000,n2:7001"), RedisClusterMode::Cluster);
/// assert_eq!(mode("redis://n1:7000,n2:7001"), RedisClusterMode::Detect);
/// assert_eq!(mode("redis://n1:7000"), RedisClusterMode::Standalone);
/// assert_eq!(mode("redis://n1:7000,n2:7001/2"), RedisClusterMode::Standalone);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RedisClusterMode {
    /// One server, a failover list, or the master Sentinel names.
    Standalone,
    /// A Redis Cluster (`redis+cluster://`): the nodes are seeds, any one of
    /// which gives the slot map.
    Cluster,
    /// A plain `redis://` list of several nodes, database 0: a cluster if the
    /// first node that answers says `cluster_enabled:1` to `INFO cluster`,
    /// otherwise an ordered failover list.
    Detect,
}

/// Where and how to reach Redis, read from seed 000's connection strings:
///
/// ```text
/// redis://[[username]:password@]host[:port][,host[:port]...][/db][?option=value&...]
/// rediss://...    TLS (rustls), verified against the system's roots, or against the
///                 CA file given by ?ssl_ca_certs=/path/ca.pem
/// redis+sentinel://[[username]:password@]sentinel[:port][,sentinel[:port]...]/master[/db][?...]
/// rediss+sentinel://...                  the same over TLS, to the sentinels and the master
/// redis://sentinel-host:26379/mymaster   the seed's form: a path that is not a number names a master
/// redis+cluster://[[username]:password@]node[:port][,node[:port]...][?...]   Redis Cluster seeds
/// rediss+cluster://...                   the same over TLS
/// ```
///
/// Options: `db=N` (same as `/N`), `ssl_ca_certs=PATH`, `ssl_cert_reqs=required`
/// (certificates are always verified; `none` is refused), and for Sentinel
/// `sentinel_username=USER` and `sentinel_password=PASSWORD` (the sentinels' own
/// credentials; the URL's user and password are the master's). Anything else is an
/// error.
///
/// Several hosts (`redis://node1:6379,node2:6379`, database 0) are asked, when
/// first dialled, whether they are a Redis Cluster ([`RedisClusterMode::Detect`]):
/// if the first that answers says `cluster_enabled:1`, they are the cluster's
/// seeds; otherwise they are an ordered failover list, and every (re)connection
/// goes to the first one that answers. `redis+cluster://` says "cluster" outright
/// (no database, no Sentinel options: a cluster has only database 0).
///
/// With [`sentinel`](Self::sentinel) set, [`nodes`](Self::nodes) are the sentinels
/// (port 26379 unless given): each (re)connection asks them in turn where the
/// master is (`SENTINEL get-master-addr-by-name`), dials that address and checks
/// with `ROLE` that it is the master; a failover is followed without a restart.
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
/// assert!(config.tls.is_none() && config.sentinel.is_none());
/// // Shown without the password:
/// assert_eq!(config.to_string(), "redis://app:***@node1:6379,node2:6379/2");
///
/// // The seed's Sentinel form: `mymaster` is not a database number.
/// let config: RedisConfig = "redis://sentinel-host:26379/mymaster".parse().unwrap();
/// assert_eq!(config.sentinel.unwrap().master, "mymaster");
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct RedisConfig {
    /// The servers, in failover order (at least one); with
    /// [`sentinel`](Self::sentinel), the sentinels, asked in this order.
    pub nodes: Vec<RedisNode>,
    /// ACL user name (Redis 6+); `None` for the default user.
    pub username: Option<String>,
    /// Password (`AUTH`).
    pub password: Option<String>,
    /// Database number (`SELECT`; pub/sub itself is not per database).
    pub db: u32,
    /// TLS, for `rediss://` (and `rediss+sentinel://`).
    pub tls: Option<RedisTls>,
    /// Redis Sentinel: the master is found by asking the sentinels in `nodes`.
    pub sentinel: Option<RedisSentinel>,
    /// Whether `nodes` are a Redis Cluster's seeds.
    pub cluster: RedisClusterMode,
}

impl fmt::Debug for RedisConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisConfig")
            .field("nodes", &self.nodes)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "***"))
            .field("db", &self.db)
            .field("tls", &self.tls)
            .field("sentinel", &self.sentinel)
            .field("cluster", &self.cluster)
            .finish()
    }
}

impl fmt::Display for RedisConfig {
    /// The connection string, with the passwords masked (a Sentinel config is
    /// shown in the `redis+sentinel://` form, whichever form it was read from).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let cluster = self.cluster == RedisClusterMode::Cluster;
        f.write_str(match (self.tls.is_some(), self.sentinel.is_some(), cluster) {
            (false, false, false) => "redis://",
            (true, false, false) => "rediss://",
            (false, true, _) => "redis+sentinel://",
            (true, true, _) => "rediss+sentinel://",
            (false, false, true) => "redis+cluster://",
            (true, false, true) => "rediss+cluster://",
        })?;
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
        if let Some(sentinel) = &self.sentinel {
            write!(f, "/{}", utf8_percent_encode(&sentinel.master, NAME_SAFE))?;
        }
        if self.db != 0 {
            write!(f, "/{}", self.db)?;
        }
        let mut options = Vec::new();
        if let Some(ca) = self.tls.as_ref().and_then(|tls| tls.ca_file.as_ref()) {
            options.push(format!(
                "ssl_ca_certs={}",
                utf8_percent_encode(&ca.to_string_lossy(), PATH_SAFE)
            ));
        }
        if let Some(sentinel) = &self.sentinel {
            if let Some(user) = &sentinel.username {
                options.push(format!("sentinel_username={}", utf8_percent_encode(user, NAME_SAFE)));
            }
            if sentinel.password.is_some() {
                options.push("sentinel_password=***".into());
            }
        }
        if !options.is_empty() {
            write!(f, "?{}", options.join("&"))?;
        }
        Ok(())
    }
}

/// Why a Redis connection string was refused.
///
/// ```
/// use courier_notify::{RedisConfig, RedisUrlError};
/// let err = RedisConfig::parse("redis+sentinel://sentinel-host:26379").unwrap_err();
/// assert!(matches!(err, RedisUrlError::Invalid { .. }));
/// assert!(err.to_string().contains("master"));
/// let err = RedisConfig::parse("redis://:hunter2@host:port").unwrap_err();
/// assert!(matches!(err, RedisUrlError::Invalid { .. }));
/// assert!(!err.to_string().contains("hunter2"));
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum RedisUrlError {
    /// Not a `redis://`, `rediss://`, `redis+sentinel://`, `rediss+sentinel://`,
    /// `redis+cluster://` or `rediss+cluster://` URL.
    #[error(
        "{url:?} is not a Redis URL: it must start with redis://, rediss://, redis+sentinel://, \
         rediss+sentinel://, redis+cluster:// or rediss+cluster://"
    )]
    NotRedis {
        /// The URL, passwords masked.
        url: String,
    },
    /// Malformed.
    #[error("invalid Redis URL {url:?}: {reason}")]
    Invalid {
        /// The URL, passwords masked.
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

/// What the path of a URL says: a database, a Sentinel master, both or neither.
struct Path {
    master: Option<String>,
    db: Option<u32>,
}

impl RedisConfig {
    /// One server, no password, database 0, no TLS, no Sentinel.
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
            sentinel: None,
            cluster: RedisClusterMode::Standalone,
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
        let Some((scheme, rest)) = url.split_once("://") else {
            return Err(RedisUrlError::NotRedis { url: shown });
        };
        let scheme = scheme.to_ascii_lowercase();
        let (tls, sentinel_scheme, cluster_scheme) = match scheme.as_str() {
            "redis" => (false, false, false),
            "rediss" => (true, false, false),
            "redis+sentinel" => (false, true, false),
            "rediss+sentinel" => (true, true, false),
            "redis+cluster" => (false, false, true),
            "rediss+cluster" => (true, false, true),
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

        let Path { master, mut db } = parse_path(path, sentinel_scheme).map_err(&invalid)?;
        if cluster_scheme && master.is_some() {
            return Err(invalid(
                "a Redis Cluster URL has no Sentinel master (nor any path but /0): redis+cluster://node1:7000,node2:7001"
                    .into(),
            ));
        }
        let default_port = if master.is_some() {
            DEFAULT_SENTINEL_PORT
        } else {
            DEFAULT_REDIS_PORT
        };
        let mut nodes = Vec::new();
        for host in hosts.split(',') {
            nodes.push(parse_node(host.trim(), default_port).map_err(&invalid)?);
        }

        let mut ca_file = None;
        let mut sentinel_username = None;
        let mut sentinel_password = None;
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
                "sentinel_username" | "sentinel_password" if master.is_none() => {
                    return Err(invalid(format!(
                        "{key} is for Sentinel: name the master, redis+sentinel://host:26379/mymaster"
                    )));
                }
                "sentinel_username" => sentinel_username = Some(value).filter(|v| !v.is_empty()),
                "sentinel_password" => sentinel_password = Some(value).filter(|v| !v.is_empty()),
                "service_name" | "master_name" | "sentinel_master" => {
                    return Err(invalid(format!(
                        "{key}: give the Sentinel master's name in the path, redis+sentinel://host:26379/mymaster"
                    )));
                }
                _ => {
                    return Err(invalid(format!(
                        "unknown option {key:?} (known: db, ssl_ca_certs, ssl_cert_reqs, sentinel_username, \
                         sentinel_password)"
                    )));
                }
            }
        }
        if sentinel_username.is_some() && sentinel_password.is_none() {
            return Err(invalid("sentinel_username needs sentinel_password".into()));
        }
        let db = db.unwrap_or(0);
        if cluster_scheme && db != 0 {
            return Err(invalid(format!("database {db}: a Redis Cluster has only database 0")));
        }
        // A comma list could be a cluster's seeds or a failover list; the
        // nodes themselves say which when first dialled. With a database other
        // than 0 it cannot be a cluster.
        let cluster = if cluster_scheme {
            RedisClusterMode::Cluster
        } else if master.is_none() && nodes.len() > 1 && db == 0 {
            RedisClusterMode::Detect
        } else {
            RedisClusterMode::Standalone
        };

        Ok(RedisConfig {
            nodes,
            username,
            password,
            db,
            tls: tls.then_some(RedisTls { ca_file }),
            sentinel: master.map(|master| RedisSentinel {
                master,
                username: sentinel_username,
                password: sentinel_password,
            }),
            cluster,
        })
    }
}

/// `[master/][db]` after the hosts. With a Sentinel scheme the first segment is
/// always the master; otherwise a number is a database and anything else a master.
fn parse_path(path: &str, sentinel_scheme: bool) -> Result<Path, String> {
    let path = path.trim_end_matches('/');
    let segments: Vec<&str> = if path.is_empty() {
        Vec::new()
    } else {
        path.split('/').collect()
    };
    let database = |text: &str| match text.parse::<u32>() {
        Ok(n) => Ok(n),
        Err(_) if !text.is_empty() && text.chars().all(|c| c.is_ascii_digit()) => {
            Err(format!("database number {text} is out of range"))
        }
        Err(_) => Err(format!("{text:?} is not a database number")),
    };
    let names_master = match segments.first() {
        None => false,
        Some(first) => sentinel_scheme || !first.chars().all(|c| c.is_ascii_digit()),
    };
    if !names_master {
        if sentinel_scheme {
            return Err("a Sentinel URL names the master it asks for: redis+sentinel://host:26379/mymaster".into());
        }
        return match segments.as_slice() {
            [] => Ok(Path { master: None, db: None }),
            [db] => Ok(Path {
                master: None,
                db: Some(database(db)?),
            }),
            _ => Err(format!(
                "unexpected path {path:?}: after the hosts comes /db, or for Sentinel /master/db"
            )),
        };
    }
    let master = decode(segments[0]).map_err(|e| format!("master name: {e}"))?;
    if master.is_empty() {
        return Err("the Sentinel master's name is empty: redis+sentinel://host:26379/mymaster".into());
    }
    if master.chars().any(char::is_whitespace) {
        return Err(format!("{master:?} is not a Sentinel master name (it has white space)"));
    }
    let db = match &segments[1..] {
        [] => None,
        [db] => Some(database(db)?),
        _ => {
            return Err(format!(
                "unexpected path {path:?}: a Sentinel URL ends in /master or /master/db"
            ));
        }
    };
    Ok(Path {
        master: Some(master),
        db,
    })
}

fn parse_node(text: &str, default_port: u16) -> Result<RedisNode, String> {
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
        None => default_port,
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

/// `url` with its passwords masked: the one between `user:` and the last `@` of
/// the authority, and the value of a `sentinel_password=` option.
pub(crate) fn mask_password(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let authority = &rest[..end];
    let authority = match authority.rsplit_once('@') {
        Some((userinfo, hosts)) => {
            let user = userinfo.split_once(':').map(|(u, _)| u);
            let masked = match user {
                Some(user) => format!("{user}:***"),
                None => "***".to_string(),
            };
            format!("{masked}@{hosts}")
        }
        None => authority.to_string(),
    };
    format!("{scheme}://{authority}{}", mask_query_password(&rest[end..]))
}

/// The path-and-query part of a URL with `sentinel_password=`'s value masked.
fn mask_query_password(tail: &str) -> String {
    let Some(q) = tail.find('?') else {
        return tail.to_string();
    };
    let (before, query) = tail.split_at(q + 1);
    let (query, fragment) = match query.find('#') {
        Some(i) => query.split_at(i),
        None => (query, ""),
    };
    let pairs: Vec<String> = query
        .split('&')
        .map(|pair| match pair.split_once('=') {
            Some((key, _)) if key == "sentinel_password" => format!("{key}=***"),
            _ => pair.to_string(),
        })
        .collect();
    format!("{before}{}{fragment}", pairs.join("&"))
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
            (c.nodes.clone(), c.db, c.password.clone(), c.sentinel.clone()),
            (vec![node("localhost", 6379)], 0, None, None)
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
        assert!(c.sentinel.is_none(), "a comma list of plain hosts is no Sentinel URL");
        assert_eq!(
            c.cluster,
            RedisClusterMode::Detect,
            "a comma list of plain hosts is a cluster or a failover list, as the nodes say"
        );

        let c = RedisConfig::parse("rediss://localhost:6379").unwrap();
        assert_eq!(c.tls, Some(RedisTls { ca_file: None }));

        let c = RedisConfig::parse("redis://sentinel-host:26379/mymaster").unwrap();
        assert_eq!(c.nodes, vec![node("sentinel-host", 26379)]);
        assert_eq!(c.sentinel.unwrap().master, "mymaster");
        assert_eq!((c.db, c.password), (0, None));
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
    fn sentinel_forms_parse() {
        let c = RedisConfig::parse("redis+sentinel://app:pw@s1:26379,s2,[::1]:26380/mymaster/2").unwrap();
        assert_eq!(
            c.nodes,
            vec![node("s1", 26379), node("s2", 26379), node("::1", 26380)],
            "a sentinel's port defaults to 26379"
        );
        assert_eq!(
            (c.username.as_deref(), c.password.as_deref(), c.db),
            (Some("app"), Some("pw"), 2),
            "the user and password are the master's"
        );
        let sentinel = c.sentinel.unwrap();
        assert_eq!(sentinel.master, "mymaster");
        assert_eq!((sentinel.username, sentinel.password), (None, None));
        assert!(c.tls.is_none());

        // The seed's form, with a database, and its TLS twin.
        let c = RedisConfig::parse("redis://s1,s2/my.master-1/5").unwrap();
        assert_eq!(c.nodes, vec![node("s1", 26379), node("s2", 26379)]);
        assert_eq!((c.sentinel.unwrap().master.as_str(), c.db), ("my.master-1", 5));
        let c = RedisConfig::parse("rediss://s1:26379/mymaster?ssl_ca_certs=/ca.pem").unwrap();
        assert!(c.sentinel.is_some());
        assert_eq!(c.tls.unwrap().ca_file, Some(PathBuf::from("/ca.pem")));

        let c =
            RedisConfig::parse("rediss+sentinel://s1/mymaster?sentinel_username=watch&sentinel_password=s%26pw&db=1")
                .unwrap();
        let sentinel = c.sentinel.clone().unwrap();
        assert_eq!(sentinel.username.as_deref(), Some("watch"));
        assert_eq!(sentinel.password.as_deref(), Some("s&pw"));
        assert_eq!((c.db, c.username.clone(), c.password.clone()), (1, None, None));
        assert!(c.tls.is_some());

        // With the sentinel scheme, the first segment is the master even if numeric.
        let c = RedisConfig::parse("redis+sentinel://s1/0").unwrap();
        assert_eq!((c.sentinel.unwrap().master.as_str(), c.db), ("0", 0));
        // A percent-encoded master name.
        let c = RedisConfig::parse("redis+sentinel://s1/my%2Fmaster").unwrap();
        assert_eq!(c.sentinel.unwrap().master, "my/master");
    }

    #[test]
    fn cluster_forms_parse() {
        let c = RedisConfig::parse("redis+cluster://app:pw@n1:7000,n2,[::1]:7002").unwrap();
        assert_eq!(c.nodes, vec![node("n1", 7000), node("n2", 6379), node("::1", 7002)]);
        assert_eq!(
            (c.username.as_deref(), c.password.as_deref()),
            (Some("app"), Some("pw"))
        );
        assert_eq!(
            (c.cluster, c.sentinel.is_none(), c.tls.is_none()),
            (RedisClusterMode::Cluster, true, true)
        );
        let c = RedisConfig::parse("rediss+cluster://n1:7000?ssl_ca_certs=/ca.pem").unwrap();
        assert_eq!(c.cluster, RedisClusterMode::Cluster);
        assert_eq!(c.tls.unwrap().ca_file, Some(PathBuf::from("/ca.pem")));
        let c = RedisConfig::parse("redis+cluster://n1/0").unwrap();
        assert_eq!((c.cluster, c.db), (RedisClusterMode::Cluster, 0));
        assert_eq!(
            RedisConfig::parse("redis://n1").unwrap().cluster,
            RedisClusterMode::Standalone
        );
        assert_eq!(
            RedisConfig::parse("redis://a,b/1").unwrap().cluster,
            RedisClusterMode::Standalone
        );
        assert_eq!(
            RedisConfig::parse("rediss://a,b").unwrap().cluster,
            RedisClusterMode::Detect
        );
        assert_eq!(
            RedisConfig::parse("redis://s1,s2/m").unwrap().cluster,
            RedisClusterMode::Standalone
        );
        for (url, expected) in [
            ("redis+cluster://n1/mymaster", "no Sentinel master"),
            ("redis+cluster://n1/2", "only database 0"),
            ("redis+cluster://n1?db=3", "only database 0"),
            ("redis+cluster://n1?sentinel_password=x", "is for Sentinel"),
        ] {
            let err = RedisConfig::parse(url).unwrap_err().to_string();
            assert!(err.contains(expected), "{url}: {err}");
        }
    }

    #[test]
    fn a_config_is_shown_as_a_url_that_reads_back_the_same() {
        for url in [
            "redis://h:6379",
            "redis://h:6379,g:6380/2",
            "rediss://h:6379?ssl_ca_certs=/etc/ca.pem",
            "redis+sentinel://s1:26379,s2:26380/mymaster",
            "redis+sentinel://s1:26379/my%2Fmaster/3",
            "rediss+sentinel://s1:26379/mymaster?ssl_ca_certs=/etc/ca.pem",
            "redis+cluster://n1:7000,n2:7001",
            "rediss+cluster://n1:7000?ssl_ca_certs=/etc/ca.pem",
        ] {
            let config = RedisConfig::parse(url).unwrap();
            assert_eq!(config.to_string(), url);
            assert_eq!(RedisConfig::parse(&config.to_string()).unwrap(), config);
        }
        let seed = RedisConfig::parse("redis://sentinel-host/mymaster").unwrap();
        assert_eq!(seed.to_string(), "redis+sentinel://sentinel-host:26379/mymaster");
    }

    #[test]
    fn sentinel_mistakes_are_refused_clearly() {
        let cases = [
            ("redis+sentinel://s1:26379", "names the master"),
            ("redis+sentinel://s1:26379/", "names the master"),
            ("rediss+sentinel://s1", "names the master"),
            ("redis+sentinel://s1//2", "master's name is empty"),
            ("redis://s1/mymaster/x", "not a database number"),
            ("redis://s1/mymaster/2/3", "ends in /master or /master/db"),
            ("redis://s1/2/3", "unexpected path"),
            ("redis+sentinel://s1/my%20master", "white space"),
            ("redis://h?sentinel_password=x", "is for Sentinel"),
            ("redis://h/1?sentinel_username=u", "is for Sentinel"),
            ("redis+sentinel://s/m?sentinel_username=u", "needs sentinel_password"),
            ("redis://h?service_name=mymaster", "in the path"),
            ("redis://h?sentinel_master=mymaster", "in the path"),
            ("redis+sentinel://s/m/99999999999", "out of range"),
            ("sentinel://s/m", "must start with redis://"),
        ];
        for (url, expected) in cases {
            let err = RedisConfig::parse(url).unwrap_err().to_string();
            assert!(err.contains(expected), "{url}: {err}");
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

        let url = "redis+sentinel://:hunter2@s/m?sentinel_username=u&sentinel_password=swordfish";
        let c = RedisConfig::parse(url).unwrap();
        let shown = format!("{c} {c:?}");
        assert!(!shown.contains("hunter2") && !shown.contains("swordfish"), "{shown}");
        assert_eq!(
            c.to_string(),
            "redis+sentinel://:***@s:26379/m?sentinel_username=u&sentinel_password=***"
        );
        assert_eq!(
            mask_password(url),
            "redis+sentinel://:***@s/m?sentinel_username=u&sentinel_password=***"
        );
        let err = RedisConfig::parse("redis+sentinel://s/m?sentinel_password=swordfish&bad=1")
            .unwrap_err()
            .to_string();
        assert!(!err.contains("swordfish"), "{err}");
    }
}
