//! `--cert-dir`: which files make a certificate, and the names each certificate is served for.
//!
//! For: listing the directory (with what tells a changed file: size, modification time, inode),
//! reading every certificate and its key, and building the [`CertTable`] the resolver looks names
//! up in. The layout: `NAME.pem` or `NAME.crt` holds the certificate chain (leaf first), with the
//! private key in the same file or in `NAME.key` beside it. A certificate is served for the DNS
//! names of its subjectAltName (its common name when it has none), `*.example.com` included. A
//! file that cannot be used (unreadable, not PEM, no certificate, no key, a key that does not
//! belong to the certificate, no DNS name) is reported in the log with the reason and skipped;
//! the others are served. Files whose names start with `.` are ignored (a Kubernetes secret volume
//! keeps its data in `..data/`, reached through symbolic links, which are followed).
//! Not for: choosing a certificate for a handshake (see `resolve`) or deciding when to rescan
//! (see `reload`).

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::sign::CertifiedKey;

/// What the directory held at one scan: file name → what tells whether it changed.
pub(super) type Listing = BTreeMap<String, Stamp>;

/// What tells a changed file: an editor's rewrite changes the modification time, an atomic
/// rename or a Kubernetes symbolic-link swap the inode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Stamp {
    len: u64,
    modified: Option<SystemTime>,
    inode: u64,
    device: u64,
}

/// The certificates by name, built whole from one scan and swapped whole.
#[derive(Debug, Default)]
pub(crate) struct CertTable {
    /// Exact names, lower case.
    exact: HashMap<String, Arc<CertifiedKey>>,
    /// `*.example.com` under `example.com`.
    wildcard: HashMap<String, Arc<CertifiedKey>>,
    /// For a client that sends no SNI or a name no certificate has: the certificate of the first
    /// usable file in file-name order.
    default: Option<Arc<CertifiedKey>>,
}

impl CertTable {
    /// The certificate for a client's SNI: its exact name, else the wildcard one label up
    /// (`*.example.com` for `a.example.com`, not for `a.b.example.com` nor `example.com`), else
    /// the default. `None` only when there is no certificate at all.
    pub(crate) fn lookup(&self, server_name: Option<&str>) -> Option<Arc<CertifiedKey>> {
        let found = server_name.and_then(|name| {
            let name = name.trim_end_matches('.').to_ascii_lowercase();
            self.exact.get(&name).or_else(|| {
                let (_, parent) = name.split_once('.')?;
                self.wildcard.get(parent)
            })
        });
        found.or(self.default.as_ref()).cloned()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.default.is_none()
    }
}

/// One usable certificate file.
#[derive(Debug)]
struct Loaded {
    file: String,
    names: Vec<String>,
    /// Seconds since the Unix epoch.
    not_after: i64,
    key: Arc<CertifiedKey>,
}

/// Lists the directory: regular files (symbolic links followed) whose names end in `.pem`,
/// `.crt` or `.key` and do not start with `.`.
pub(super) fn scan(dir: &Path) -> io::Result<Listing> {
    let mut listing = Listing::new();
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let Ok(name) = entry.file_name().into_string() else {
            continue;
        };
        if name.starts_with('.') || kind(&name).is_none() {
            continue;
        }
        // Follows symbolic links; a dangling one (mid-swap) is left for the next scan.
        let Ok(meta) = fs::metadata(entry.path()) else {
            continue;
        };
        if !meta.is_file() {
            continue;
        }
        listing.insert(
            name,
            Stamp {
                len: meta.len(),
                modified: meta.modified().ok(),
                inode: meta.ino(),
                device: meta.dev(),
            },
        );
    }
    Ok(listing)
}

/// Scans and loads the directory; bad files are logged and skipped.
pub(super) fn load(dir: &Path) -> io::Result<(CertTable, Listing)> {
    let listing = scan(dir)?;
    Ok((build(dir, &listing), listing))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FileKind {
    /// `.pem` or `.crt`: a chain, maybe with its key.
    Chain,
    /// `.key`: the key of the chain file of the same stem.
    Key,
}

/// The stem and kind of a file name the directory may hold.
fn kind(name: &str) -> Option<(&str, FileKind)> {
    let (stem, ext) = name.rsplit_once('.')?;
    if stem.is_empty() {
        return None;
    }
    match ext.to_ascii_lowercase().as_str() {
        "pem" | "crt" => Some((stem, FileKind::Chain)),
        "key" => Some((stem, FileKind::Key)),
        _ => None,
    }
}

/// Reads every file of the listing and builds the table, logging what was skipped and why.
fn build(dir: &Path, listing: &Listing) -> CertTable {
    let mut loaded = Vec::new();
    for name in listing.keys() {
        let Some((stem, kind)) = kind(name) else { continue };
        let key_file = format!("{stem}.key");
        let result = match kind {
            FileKind::Chain => load_file(
                dir,
                name,
                listing.contains_key(&key_file).then_some(key_file.as_str()),
            ),
            FileKind::Key => {
                if listing.keys().any(|n| n != name && kind_of_stem(n, stem)) {
                    continue;
                }
                Err(format!(
                    "a private key without its certificate: expected {stem}.pem or {stem}.crt beside it"
                ))
            }
        };
        match result {
            Ok(cert) => loaded.push(cert),
            Err(reason) => tracing::warn!(
                file = %dir.join(name).display(),
                error = %reason,
                "skipping a certificate file; the other certificates are still served"
            ),
        }
    }
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
    for cert in &loaded {
        if cert.not_after < now {
            tracing::warn!(
                file = %dir.join(&cert.file).display(),
                names = %cert.names.join(","),
                "serving an expired certificate: clients will refuse it"
            );
        } else {
            tracing::info!(
                file = %dir.join(&cert.file).display(),
                names = %cert.names.join(","),
                "certificate loaded"
            );
        }
    }
    let table = table(loaded);
    if table.is_empty() {
        tracing::warn!(
            dir = %dir.display(),
            "no usable certificate in --cert-dir: TLS handshakes are refused until one is added"
        );
    }
    table
}

/// Whether `name` is a chain file of this stem.
fn kind_of_stem(name: &str, stem: &str) -> bool {
    matches!(kind(name), Some((s, FileKind::Chain)) if s == stem)
}

/// The table of the usable certificates (in file-name order). Where several name the same host,
/// the one valid longest wins (a renewed certificate added beside the old one takes over at
/// once), then the first in file-name order.
fn table(loaded: Vec<Loaded>) -> CertTable {
    let mut table = CertTable {
        default: loaded.first().map(|c| c.key.clone()),
        ..CertTable::default()
    };
    let mut expiry: HashMap<&str, i64> = HashMap::new();
    for cert in &loaded {
        for name in &cert.names {
            if expiry.get(name.as_str()).is_some_and(|&t| t >= cert.not_after) {
                continue;
            }
            expiry.insert(name.as_str(), cert.not_after);
            match name.strip_prefix("*.") {
                Some(parent) => table.wildcard.insert(parent.to_owned(), cert.key.clone()),
                None => table.exact.insert(name.clone(), cert.key.clone()),
            };
        }
    }
    table
}

/// Loads one chain file, with its key from the same file or from `key_file`.
fn load_file(dir: &Path, file: &str, key_file: Option<&str>) -> Result<Loaded, String> {
    let pem = fs::read(dir.join(file)).map_err(|e| format!("cannot read the file: {e}"))?;
    let chain = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("not a valid PEM file: {e}"))?;
    let Some(leaf) = chain.first() else {
        return Err("no certificate in it (expected a PEM block BEGIN CERTIFICATE)".into());
    };
    let key = match PrivateKeyDer::from_pem_slice(&pem) {
        Ok(key) => key,
        Err(rustls::pki_types::pem::Error::NoItemsFound) => match key_file {
            Some(key_file) => {
                let pem = fs::read(dir.join(key_file))
                    .map_err(|e| format!("cannot read its private key {key_file}: {e}"))?;
                PrivateKeyDer::from_pem_slice(&pem).map_err(|e| match e {
                    rustls::pki_types::pem::Error::NoItemsFound => {
                        format!("no private key in {key_file} (expected a PEM block BEGIN PRIVATE KEY)")
                    }
                    e => format!("{key_file} is not a valid PEM file: {e}"),
                })?
            }
            None => {
                let stem = kind(file).map_or(file, |(stem, _)| stem);
                return Err(format!(
                    "no private key: put it in the same file or in {stem}.key beside it"
                ));
            }
        },
        Err(e) => return Err(format!("not a valid PEM file: {e}")),
    };
    let (names, not_after) = names_and_expiry(leaf)?;
    let signing_key = rustls::crypto::ring::sign::any_supported_type(&key)
        .map_err(|e| format!("unsupported private key: {e}"))?;
    let certified = CertifiedKey::new(chain, signing_key);
    match certified.keys_match() {
        Ok(()) | Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::Unknown)) => {}
        Err(_) => return Err("the private key does not belong to the certificate".into()),
    }
    Ok(Loaded {
        file: file.to_owned(),
        names,
        not_after,
        key: Arc::new(certified),
    })
}

/// The leaf's DNS names, lower case (subjectAltName, else the common name), and its expiry.
fn names_and_expiry(leaf: &CertificateDer<'_>) -> Result<(Vec<String>, i64), String> {
    let (_, cert) = x509_parser::parse_x509_certificate(leaf)
        .map_err(|e| format!("the first certificate cannot be parsed: {e}"))?;
    let mut names: Vec<String> = match cert.subject_alternative_name() {
        Ok(Some(san)) => san
            .value
            .general_names
            .iter()
            .filter_map(|n| match n {
                x509_parser::extensions::GeneralName::DNSName(name) => Some(name.to_ascii_lowercase()),
                _ => None,
            })
            .collect(),
        Ok(None) => Vec::new(),
        Err(e) => return Err(format!("bad subjectAltName extension: {e}")),
    };
    if names.is_empty() {
        names = cert
            .subject()
            .iter_common_name()
            .filter_map(|cn| cn.as_str().ok())
            .filter(|cn| is_dns_name(cn))
            .map(str::to_ascii_lowercase)
            .collect();
    }
    names.retain(|n| is_dns_name(n));
    names.dedup();
    if names.is_empty() {
        return Err("the certificate has no DNS name (subjectAltName) to be served for".into());
    }
    Ok((names, cert.validity().not_after.timestamp()))
}

/// A host name, or a wildcard `*.` in front of one (no IP addresses).
fn is_dns_name(name: &str) -> bool {
    let host = name.strip_prefix("*.").unwrap_or(name);
    !host.is_empty()
        && host.parse::<std::net::IpAddr>().is_err()
        && host.split('.').all(|label| {
            !label.is_empty()
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    /// A self-signed certificate for `names`, as (chain PEM, key PEM).
    pub(crate) fn self_signed(names: &[&str]) -> (String, String) {
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let cert = rcgen::generate_simple_self_signed(names).expect("rcgen");
        (cert.cert.pem(), cert.key_pair.serialize_pem())
    }

    struct Dir(std::path::PathBuf);

    impl Dir {
        fn new(test: &str) -> Self {
            let dir = std::env::temp_dir().join(format!("berth-tls-{test}-{}", std::process::id()));
            let _ = fs::remove_dir_all(&dir);
            fs::create_dir_all(&dir).expect("mkdir");
            Self(dir)
        }

        fn write(&self, name: &str, contents: &str) {
            fs::write(self.0.join(name), contents).expect("write");
        }
    }

    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    fn leaf(key: &CertifiedKey) -> Vec<u8> {
        key.end_entity_cert().expect("leaf").to_vec()
    }

    #[test]
    fn layouts_names_wildcards_and_default() {
        let dir = Dir::new("layouts");
        let (a_cert, a_key) = self_signed(&["a.example", "www.a.example"]);
        dir.write("a.pem", &format!("{a_cert}{a_key}"));
        let (b_cert, b_key) = self_signed(&["B.Example"]);
        dir.write("b.crt", &b_cert);
        dir.write("b.key", &b_key);
        let (w_cert, w_key) = self_signed(&["*.wild.example"]);
        dir.write("wild.pem", &format!("{w_key}{w_cert}"));
        dir.write("notes.txt", "ignored");
        dir.write(".hidden.pem", "ignored");

        let (table, listing) = load(&dir.0).expect("load");
        assert_eq!(listing.len(), 4, "{listing:?}");
        let served = |name: Option<&str>| leaf(&table.lookup(name).expect("a certificate"));
        let a = served(Some("a.example"));
        assert_eq!(served(Some("www.a.example")), a);
        assert_eq!(served(Some("b.example")), served(Some("B.EXAMPLE.")));
        assert_ne!(served(Some("b.example")), a);
        let w = served(Some("x.wild.example"));
        assert_ne!(w, a);
        // A wildcard covers one label only; anything else gets the default (a.pem, first by name).
        assert_eq!(served(Some("x.y.wild.example")), a);
        assert_eq!(served(Some("wild.example")), a);
        assert_eq!(served(Some("unknown.example")), a);
        assert_eq!(served(None), a);
    }

    #[test]
    fn bad_files_are_skipped() {
        let dir = Dir::new("bad");
        let (good_cert, good_key) = self_signed(&["good.example"]);
        dir.write("good.pem", &format!("{good_cert}{good_key}"));
        let (lonely, _) = self_signed(&["nokey.example"]);
        dir.write("nokey.crt", &lonely);
        dir.write(
            "garbage.pem",
            "-----BEGIN CERTIFICATE-----\nnot base64!\n-----END CERTIFICATE-----\n",
        );
        let (_, orphan_key) = self_signed(&["orphan.example"]);
        dir.write("orphan.key", &orphan_key);
        let (other_cert, _) = self_signed(&["mismatch.example"]);
        let (_, other_key) = self_signed(&["mismatch.example"]);
        dir.write("mismatch.pem", &format!("{other_cert}{other_key}"));

        let listing = scan(&dir.0).expect("scan");
        let loaded: Vec<_> = ["garbage.pem", "mismatch.pem", "nokey.crt"]
            .iter()
            .map(|f| load_file(&dir.0, f, None).expect_err(f))
            .collect();
        assert!(loaded[0].contains("not a valid PEM file"), "{loaded:?}");
        assert!(loaded[1].contains("does not belong"), "{loaded:?}");
        assert!(loaded[2].contains("nokey.key"), "{loaded:?}");
        let table = build(&dir.0, &listing);
        assert_eq!(table.exact.len(), 1, "{:?}", table.exact.keys());
        assert!(table.exact.contains_key("good.example"));
    }

    /// A Kubernetes secret volume: `tls.crt` and `tls.key` are links into `..data`, itself a link
    /// to a timestamped directory that an update replaces by swapping the link.
    #[test]
    fn a_symbolic_link_swap_is_a_change() {
        use std::os::unix::fs::symlink;
        let dir = Dir::new("k8s");
        let write_version = |version: &str, site: &(String, String)| {
            let data = dir.0.join(version);
            fs::create_dir_all(&data).expect("mkdir");
            fs::write(data.join("tls.crt"), &site.0).expect("write");
            fs::write(data.join("tls.key"), &site.1).expect("write");
            let tmp = dir.0.join("..data_tmp");
            symlink(version, &tmp).expect("symlink");
            fs::rename(&tmp, dir.0.join("..data")).expect("swap");
        };
        let first = self_signed(&["k8s.example"]);
        write_version("..v1", &first);
        symlink("..data/tls.crt", dir.0.join("tls.crt")).expect("symlink");
        symlink("..data/tls.key", dir.0.join("tls.key")).expect("symlink");
        let (table, listing) = load(&dir.0).expect("load");
        assert_eq!(listing.keys().collect::<Vec<_>>(), ["tls.crt", "tls.key"]);
        let served = leaf(&table.lookup(Some("k8s.example")).expect("served"));
        assert_eq!(served, leaf(&table.lookup(None).expect("default")));

        let second = self_signed(&["k8s.example"]);
        write_version("..v2", &second);
        let now = scan(&dir.0).expect("scan");
        assert_ne!(now, listing, "the swap is seen");
        let table = build(&dir.0, &now);
        assert_ne!(leaf(&table.lookup(Some("k8s.example")).expect("served")), served);
    }

    #[test]
    fn names_from_common_name_when_no_san() {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "cn.example");
        let key = rcgen::KeyPair::generate().expect("key");
        let cert = params.self_signed(&key).expect("cert");
        let (names, _) = names_and_expiry(cert.der()).expect("names");
        assert_eq!(names, ["cn.example"]);
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "not a host");
        let cert = params.self_signed(&key).expect("cert");
        assert!(names_and_expiry(cert.der())
            .expect_err("no names")
            .contains("no DNS name"));
    }

    #[test]
    fn the_certificate_valid_longest_wins_a_name() {
        let key = rcgen::KeyPair::generate().expect("key");
        let make = |year: i32| {
            let mut params = rcgen::CertificateParams::new(vec!["dup.example".to_string()]).expect("params");
            params.not_after = rcgen::date_time_ymd(year, 1, 1);
            let cert = params.self_signed(&key).expect("cert");
            let (names, not_after) = names_and_expiry(cert.der()).expect("names");
            let signing = rustls::crypto::ring::sign::any_supported_type(&PrivateKeyDer::Pkcs8(
                key.serialize_der().into(),
            ))
            .expect("key");
            Loaded {
                file: format!("{year}.pem"),
                names,
                not_after,
                key: Arc::new(CertifiedKey::new(vec![cert.der().clone()], signing)),
            }
        };
        let (old, new) = (make(2030), make(2040));
        let new_leaf = leaf(&new.key);
        let old_leaf = leaf(&old.key);
        let table = table(vec![old, new]);
        assert_eq!(leaf(&table.lookup(Some("dup.example")).expect("cert")), new_leaf);
        // The default stays the first file by name.
        assert_eq!(leaf(&table.lookup(None).expect("cert")), old_leaf);
    }
}
