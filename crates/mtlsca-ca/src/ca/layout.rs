//! What a CA directory holds and how its files are read: the three CAs and
//! their file names, the bundle, the CA's key identifiers (which the store
//! checks it belongs to), and the modes its files must have.

use std::fs;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use zeroize::Zeroize;

use crate::error::{Error, IoContext, Result};
use crate::fsutil;
use crate::role::Role;

/// The CA configuration file in a CA directory.
pub const CONFIG_FILE: &str = "ca.toml";

/// The whole hierarchy in one file (root + both issuing CAs), for relying parties
/// and tools that take one CA file (`openssl s_server -CAfile ca-bundle.pem`).
pub const BUNDLE_FILE: &str = "ca-bundle.pem";
/// Largest CA file (configuration, certificate, key) read from a CA directory.
const MAX_CA_FILE: u64 = 256 * 1024;

/// The three CAs of the hierarchy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum CaKind {
    /// The root CA.
    Root,
    /// The device issuing CA (EKU serverAuth).
    Device,
    /// The entity issuing CA (EKU clientAuth).
    Entity,
}

impl CaKind {
    /// The three, root first.
    pub const ALL: [CaKind; 3] = [CaKind::Root, CaKind::Device, CaKind::Entity];

    /// `root`, `device` or `entity` (as `crl --issuer` spells it).
    pub fn as_str(self) -> &'static str {
        match self {
            CaKind::Root => "root",
            CaKind::Device => "device",
            CaKind::Entity => "entity",
        }
    }

    /// The certificate's file name in the CA directory.
    pub fn cert_file(self) -> &'static str {
        match self {
            CaKind::Root => "root.pem",
            CaKind::Device => "device-ca.pem",
            CaKind::Entity => "entity-ca.pem",
        }
    }

    /// The key's file name in `private/`.
    pub fn key_file(self) -> &'static str {
        match self {
            CaKind::Root => "root.key",
            CaKind::Device => "device-ca.key",
            CaKind::Entity => "entity-ca.key",
        }
    }

    /// The issuing CA for leaves of a role.
    pub fn for_role(role: Role) -> CaKind {
        match role {
            Role::Device => CaKind::Device,
            Role::Entity => CaKind::Entity,
        }
    }

    /// The kind named by [`CaKind::as_str`].
    pub fn parse(s: &str) -> Option<CaKind> {
        CaKind::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

/// The largest generation number a CA name may carry (a CA rolled every day
/// for a century stays under it).
pub const MAX_GENERATION: u32 = 99_999;

/// One generation of one CA of the hierarchy: what `ca roll` makes. Generation
/// 1 is what `init` made and keeps its file names (`root.pem`, `device-ca.pem`,
/// `entity-ca.pem`); generation g ≥ 2 is `root-g.pem`, `device-ca-g.pem`, … Its
/// name (`root`, `device`, `entity` for generation 1, `device-2` after) is what
/// the command line, the CRL file, the publication URL and the store's owner
/// record call it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CaId {
    /// Which CA of the hierarchy.
    pub kind: CaKind,
    /// Its generation, from 1.
    pub generation: u32,
}

impl CaId {
    /// Generation `generation` of `kind`.
    pub fn new(kind: CaKind, generation: u32) -> CaId {
        CaId { kind, generation }
    }

    /// Generation 1 of `kind`: what `init` made.
    pub fn first(kind: CaKind) -> CaId {
        CaId::new(kind, 1)
    }

    /// `device` for generation 1, `device-2` after.
    pub fn name(&self) -> String {
        self.with_suffix(self.kind.as_str(), "")
    }

    fn with_suffix(&self, stem: &str, ext: &str) -> String {
        if self.generation <= 1 {
            format!("{stem}{ext}")
        } else {
            format!("{stem}-{}{ext}", self.generation)
        }
    }

    /// The name as [`CaId::name`] writes it and nothing else: `device`,
    /// `device-2` (no `device-1`, no leading zero, no sign), so one generation
    /// has exactly one name (in URLs and file names).
    pub fn parse(s: &str) -> Option<CaId> {
        if let Some(kind) = CaKind::parse(s) {
            return Some(CaId::first(kind));
        }
        let (stem, n) = s.rsplit_once('-')?;
        let kind = CaKind::parse(stem)?;
        if n.is_empty()
            || n.len() > 5
            || n.starts_with('0')
            || !n.bytes().all(|b| b.is_ascii_digit())
        {
            return None;
        }
        let g: u32 = n.parse().ok()?;
        (2..=MAX_GENERATION)
            .contains(&g)
            .then_some(CaId::new(kind, g))
    }

    /// As the command line takes it: [`CaId::parse`], and `device-1` for generation 1.
    pub fn parse_arg(s: &str) -> Option<CaId> {
        match s.strip_suffix("-1").and_then(CaKind::parse) {
            Some(kind) => Some(CaId::first(kind)),
            None => CaId::parse(s),
        }
    }

    /// The certificate's file name in the CA directory.
    pub fn cert_file(&self) -> String {
        let stem = self.kind.cert_file().trim_end_matches(".pem");
        self.with_suffix(stem, ".pem")
    }

    /// The key's file name in `private/`.
    pub fn key_file(&self) -> String {
        let stem = self.kind.key_file().trim_end_matches(".key");
        self.with_suffix(stem, ".key")
    }
}

impl std::fmt::Display for CaId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.name())
    }
}

/// The file of the link certificate that carries root generation `subject`'s
/// name and key, signed by root generation `signer` (`root-2-by-1.pem`: root 2
/// as root 1 vouches for it; `root-1-by-2.pem` the other way).
pub fn link_file(subject: u32, signer: u32) -> String {
    format!("root-{subject}-by-{signer}.pem")
}

/// Whether `name` is a top-level certificate file that a CA generation or a
/// root roll writes: `device-ca-2.pem`, `root-3.pem`, `root-2-by-1.pem`
/// (generation 1's files are [`CaKind::cert_file`]).
pub fn is_generation_file(name: &str) -> bool {
    let Some(stem) = name.strip_suffix(".pem") else {
        return false;
    };
    if let Some((a, b)) = stem
        .strip_prefix("root-")
        .and_then(|rest| rest.split_once("-by-"))
    {
        let gen = |s: &str| CaId::parse(&format!("root-{s}")).is_some() || s == "1";
        return gen(a) && gen(b) && a != b;
    }
    CaKind::ALL.iter().any(|k| {
        let base = k.cert_file().trim_end_matches(".pem");
        stem.strip_prefix(base)
            .and_then(|n| n.strip_prefix('-'))
            .is_some_and(|n| CaId::parse(&format!("{}-{n}", k.as_str())).is_some())
    })
}

/// `[generation]` of `ca.toml`: the current generation of each CA (1 when absent).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Generations {
    /// The root's.
    #[serde(default = "one")]
    pub root: u32,
    /// The device issuing CA's.
    #[serde(default = "one")]
    pub device: u32,
    /// The entity issuing CA's.
    #[serde(default = "one")]
    pub entity: u32,
}

fn one() -> u32 {
    1
}

impl Default for Generations {
    fn default() -> Self {
        Generations {
            root: 1,
            device: 1,
            entity: 1,
        }
    }
}

impl Generations {
    /// Every CA still at generation 1.
    pub fn is_initial(&self) -> bool {
        *self == Generations::default()
    }

    /// The current generation of `kind`.
    pub fn of(&self, kind: CaKind) -> u32 {
        match kind {
            CaKind::Root => self.root,
            CaKind::Device => self.device,
            CaKind::Entity => self.entity,
        }
    }

    /// Set the current generation of `kind`.
    pub fn set(&mut self, kind: CaKind, generation: u32) {
        match kind {
            CaKind::Root => self.root = generation,
            CaKind::Device => self.device = generation,
            CaKind::Entity => self.entity = generation,
        }
    }

    /// The `[generation]` table of a `ca.toml` text (the rest is not checked
    /// here): the store's owner check reads it before a `Ca` is opened.
    pub fn of_config_text(text: &str) -> std::result::Result<Generations, String> {
        #[derive(Deserialize)]
        struct Only {
            #[serde(default)]
            generation: Generations,
        }
        let only: Only = toml::from_str(text).map_err(|e| e.message().to_string())?;
        let g = only.generation;
        for kind in CaKind::ALL {
            if !(1..=MAX_GENERATION).contains(&g.of(kind)) {
                return Err(format!(
                    "key `generation.{}`: {} is not a generation (1 to {MAX_GENERATION})",
                    kind.as_str(),
                    g.of(kind)
                ));
            }
        }
        Ok(g)
    }
}

/// The generations `ca.toml` in `dir` records (1 each when it records none, or
/// when there is no `ca.toml` yet: `init` and `restore` read the key ids before
/// they write it).
pub fn recorded_generations(dir: &Path) -> Result<Generations> {
    let path = dir.join(CONFIG_FILE);
    if !path.exists() {
        return Ok(Generations::default());
    }
    let text = read_ca_file(&path)?;
    Generations::of_config_text(&text)
        .map_err(|m| Error::State(format!("{}: damaged CA configuration: {m}", path.display())))
}

/// Read a file of the CA directory (configuration, certificate, key), bounded so a
/// foreign or damaged `--ca-dir` cannot make mtlsca read without end (exit 3).
pub(super) fn read_ca_file(path: &Path) -> Result<String> {
    use std::io::Read;
    let f = fs::File::open(path).at(path)?;
    let mut buf = Vec::new();
    f.take(MAX_CA_FILE + 1).read_to_end(&mut buf).at(path)?;
    if buf.len() as u64 > MAX_CA_FILE {
        buf.zeroize();
        return Err(Error::State(format!(
            "{} is larger than {} KiB: not a file mtlsca wrote",
            path.display(),
            MAX_CA_FILE / 1024
        )));
    }
    String::from_utf8(buf).map_err(|e| {
        let mut b = e.into_bytes();
        b.zeroize();
        Error::State(format!("{} is not UTF-8 text", path.display()))
    })
}

/// Refuse a CA key that others can read (and a `private/` they can enter).
pub fn check_key_permissions(private_dir: &Path, key_path: &Path) -> Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        for (path, fix) in [(private_dir, "700"), (key_path, "600")] {
            let meta = fs::metadata(path).at(path)?;
            if meta.permissions().mode() & 0o077 != 0 {
                return Err(Error::State(format!(
                    "{} is readable by group or others (mode {:o}); fix it with `chmod {fix} {}`",
                    path.display(),
                    meta.permissions().mode() & 0o777,
                    path.display()
                )));
            }
        }
    }
    #[cfg(not(unix))]
    let _ = (private_dir, key_path);
    Ok(())
}

/// The key identifier (subjectKeyIdentifier, hex) of every generation of each
/// CA certificate in `dir` that its `ca.toml` records, by name (`root`,
/// `device`, `entity`, `device-2`, …): what the store records as its owner.
/// Exit 3 when a certificate is missing or unreadable.
pub fn key_ids(dir: &Path) -> Result<crate::store::CaKeyIds> {
    key_ids_of(dir, &recorded_generations(dir)?)
}

/// [`key_ids`] for the generations `gens` (`restore` reads them from the
/// backup's `ca.toml` before it writes that file, last).
pub fn key_ids_of(dir: &Path, gens: &Generations) -> Result<crate::store::CaKeyIds> {
    let mut out = crate::store::CaKeyIds::new();
    for kind in CaKind::ALL {
        for g in 1..=gens.of(kind) {
            let id = CaId::new(kind, g);
            out.insert(id.name(), crate::hex::encode(&cert_key_id(dir, id)?));
        }
    }
    Ok(out)
}

/// The subjectKeyIdentifier of one CA generation's certificate in `dir`.
pub(super) fn cert_key_id(dir: &Path, id: CaId) -> Result<Vec<u8>> {
    let path = dir.join(id.cert_file());
    let text = read_ca_file(&path)?;
    let der = pem::parse(&text)
        .map(|p| p.into_contents())
        .map_err(|e| Error::State(format!("{}: {e}", path.display())))?;
    let (_, x509) = x509_parser::parse_x509_certificate(&der)
        .map_err(|e| Error::State(format!("{}: {e}", path.display())))?;
    subject_key_id(&x509)
        .ok_or_else(|| Error::State(format!("{}: no subjectKeyIdentifier", path.display())))
}

/// Paths of a CA directory whose mode lets group or others write (or, under
/// `private/` and `db/`, read), with their mode and the `chmod` argument that
/// fixes it: what `store check` reports.
pub fn loose_modes(dir: &Path) -> Vec<(PathBuf, u32, &'static str)> {
    let mut out = Vec::new();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mut check = |p: PathBuf, forbidden: u32| {
            if let Ok(m) = fs::symlink_metadata(&p) {
                let mode = m.permissions().mode() & 0o7777;
                if !m.file_type().is_symlink() && mode & forbidden != 0 {
                    let fix = if forbidden == 0o077 { "go-rwx" } else { "go-w" };
                    out.push((p, mode, fix));
                }
            }
        };
        check(dir.to_path_buf(), 0o022);
        for f in [CONFIG_FILE, "root.pem", "device-ca.pem", "entity-ca.pem"] {
            check(dir.join(f), 0o022);
        }
        if let Ok(entries) = fs::read_dir(dir) {
            for e in entries.flatten() {
                if is_generation_file(&e.file_name().to_string_lossy()) {
                    check(e.path(), 0o022);
                }
            }
        }
        for (sub, forbidden) in [
            ("private", 0o077),
            ("db", 0o077),
            ("profiles", 0o022),
            ("crl", 0o022),
        ] {
            let d = dir.join(sub);
            check(d.clone(), forbidden);
            if let Ok(entries) = fs::read_dir(&d) {
                for e in entries.flatten() {
                    check(e.path(), forbidden);
                }
            }
        }
    }
    #[cfg(not(unix))]
    let _ = dir;
    out
}

/// Write `ca-bundle.pem` from the CA certificates in `dir` (at `init`, and
/// when a backup is restored: the bundle is derived, never backed up): every
/// generation `ca.toml` records, see [`bundle_text`].
pub fn write_bundle(dir: &Path) -> Result<()> {
    write_bundle_of(dir, &recorded_generations(dir)?)
}

/// [`write_bundle`] for the generations `gens` (`restore`, before `ca.toml`).
pub fn write_bundle_of(dir: &Path, gens: &Generations) -> Result<()> {
    let text = bundle_text_of(dir, gens, None)?;
    fsutil::write_new(&dir.join(BUNDLE_FILE), text.as_bytes(), 0o644)
}

/// Rewrite `ca-bundle.pem` in one piece (after `ca roll`), leaving out the
/// generations that expired before `now`.
pub fn rewrite_bundle(dir: &Path, now: time::OffsetDateTime) -> Result<()> {
    let text = bundle_text(dir, Some(now))?;
    fsutil::write_atomic(&dir.join(BUNDLE_FILE), text.as_bytes(), 0o644)?;
    fsutil::sync_dir(dir)
}

/// What `ca-bundle.pem` holds: every root generation (the current first), the
/// link certificates between consecutive root generations, then every device
/// and every entity generation (the current first); with `now`, only those
/// that have not expired by then.
pub fn bundle_text(dir: &Path, now: Option<time::OffsetDateTime>) -> Result<String> {
    bundle_text_of(dir, &recorded_generations(dir)?, now)
}

fn bundle_text_of(
    dir: &Path,
    gens: &Generations,
    now: Option<time::OffsetDateTime>,
) -> Result<String> {
    let live = |file: &str| -> Result<Option<String>> {
        let text = read_ca_file(&dir.join(file))?;
        if let Some(now) = now {
            let der = pem::parse(&text)
                .map(|p| p.into_contents())
                .map_err(|e| Error::State(format!("{file}: {e}")))?;
            let (_, x509) = x509_parser::parse_x509_certificate(&der)
                .map_err(|e| Error::State(format!("{file}: {e}")))?;
            if x509.validity().not_after.to_datetime() <= now {
                return Ok(None);
            }
        }
        Ok(Some(text))
    };
    let mut pem = String::new();
    for kind in CaKind::ALL {
        for g in (1..=gens.of(kind)).rev() {
            if let Some(t) = live(&CaId::new(kind, g).cert_file())? {
                pem.push_str(&t);
            }
        }
        if kind == CaKind::Root {
            for g in (2..=gens.root).rev() {
                for file in [link_file(g, g - 1), link_file(g - 1, g)] {
                    if dir.join(&file).exists() {
                        if let Some(t) = live(&file)? {
                            pem.push_str(&t);
                        }
                    }
                }
            }
        }
    }
    Ok(pem)
}

/// A CA certificate's subjectKeyIdentifier.
pub(super) fn subject_key_id(
    x509: &x509_parser::certificate::X509Certificate<'_>,
) -> Option<Vec<u8>> {
    x509.extensions()
        .iter()
        .find_map(|e| match e.parsed_extension() {
            x509_parser::extensions::ParsedExtension::SubjectKeyIdentifier(k) => Some(k.0.to_vec()),
            _ => None,
        })
}
