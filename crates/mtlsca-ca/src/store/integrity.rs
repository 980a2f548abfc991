//! Store integrity and portability: `check` (every record against its
//! certificate, every index both ways, the audit hash chain) and a complete,
//! verifiable export/import of every tree for `backup` and `restore`.
//!
//! The export is one JSON object a line, `{"tree": NAME, "key": HEX, "value": HEX}`,
//! in tree-name then key order, for every tree the database holds (so trees added
//! by later versions travel too). It is taken while this process holds the store's
//! lock, so no other mtlsca process can change the store half-way through.

use std::collections::{BTreeMap, HashSet};
use std::io::{BufRead, Write};

use serde::{Deserialize, Serialize};
use x509_parser::prelude::{FromDer, X509Certificate};

use super::{
    cat, decode_record, hex_decode, hex_encode, index_names, store_err, unix_be, AuditEntry,
    Record, Status, Store, AUDIT_HEAD, SCHEMA_VERSION,
};
use crate::error::{Error, Result};

/// One problem `check` found, naming what is damaged.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Damage {
    /// What is damaged: `record <serial>`, `certificate <key>`, `audit entry <seq>`,
    /// `index <tree> <key>`.
    pub item: String,
    /// What is wrong with it.
    pub problem: String,
}

/// The result of `check`: counts and every problem found.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct CheckReport {
    /// How many records were read.
    pub records: usize,
    /// How many certificates were read.
    pub certificates: usize,
    /// How many audit entries the log holds.
    pub audit_entries: usize,
    /// SHA-256 of the last audit entry (hex), when there is one.
    pub audit_head: Option<String>,
    /// Every problem found.
    pub damage: Vec<Damage>,
    /// How many records the archive holds (`store tidy`), read and checked
    /// like the hot store's.
    #[serde(default)]
    pub archived_records: usize,
}

impl CheckReport {
    /// Whether nothing is damaged.
    pub fn healthy(&self) -> bool {
        self.damage.is_empty()
    }

    fn damaged(&mut self, item: impl Into<String>, problem: impl Into<String>) {
        self.damage.push(Damage {
            item: item.into(),
            problem: problem.into(),
        });
    }
}

/// The result of verifying the audit chain alone.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct AuditReport {
    /// How many entries the log holds.
    pub entries: usize,
    /// The head: last sequence number and hash, if the log is not empty.
    pub head: Option<String>,
    /// Every break in the chain.
    pub damage: Vec<Damage>,
}

/// One line of an export.
#[derive(Debug, Serialize, Deserialize)]
struct ExportLine {
    tree: String,
    key: String,
    value: String,
}

/// What an export wrote.
#[derive(Debug, Clone, Serialize)]
pub struct ExportSummary {
    /// Lines per tree.
    pub trees: BTreeMap<String, usize>,
    /// Lines in all.
    pub lines: usize,
}

/// sled's default tree: exported under this name and restored into the default tree.
const DEFAULT_TREE: &str = "__sled__default";
/// Longest line accepted on import (a certificate DER in hex is far shorter).
const MAX_IMPORT_LINE: usize = 4 * 1024 * 1024;

impl Store {
    /// Verify everything the store holds, and its archive (`store tidy`): the
    /// same checks, the audit chain across both, request ids of the hot store
    /// that point into the archive. Never stops at the first problem.
    pub fn check(&self) -> Result<CheckReport> {
        let mut report = CheckReport::default();
        let mut archived = BTreeMap::new();
        if let Some(archive) = self.archive()? {
            let mut part = CheckReport::default();
            archived = archive.check_contents(&mut part, &BTreeMap::new())?;
            report.archived_records = part.records;
            for d in part.damage {
                report.damaged(format!("archive {}", d.item), d.problem);
            }
        }
        let records = self.check_contents(&mut report, &archived)?;
        let audit = self.verify_audit()?;
        report.audit_entries = audit.entries;
        report.audit_head = audit.head;
        report.damage.extend(audit.damage);

        // Every record was issued through the audit log.
        let audited: HashSet<String> = self
            .audit_entries_lenient()?
            .into_iter()
            .filter(|e| e.action == "issue")
            .filter_map(|e| e.serial)
            .collect();
        for (rec, place) in records
            .values()
            .map(|r| (r, "record"))
            .chain(archived.values().map(|r| (r, "archive record")))
        {
            if !audited.contains(&rec.serial) {
                report.damaged(
                    format!("{place} {}", rec.serial),
                    "has no `issue` entry in the audit log",
                );
            }
        }
        Ok(report)
    }

    /// Records, certificates and indexes of this database (the hot store or
    /// the archive); `elsewhere` holds the archive's records, which the hot
    /// store's request ids may name.
    fn check_contents(
        &self,
        report: &mut CheckReport,
        elsewhere: &BTreeMap<Vec<u8>, Record>,
    ) -> Result<BTreeMap<Vec<u8>, Record>> {
        let mut records: BTreeMap<Vec<u8>, Record> = BTreeMap::new();

        // Records: each decodes, its key is its serial, its certificate is there,
        // parses, and says the same serial, fingerprint, validity and issuer.
        for item in self.records.iter() {
            let (k, v) = item.map_err(store_err)?;
            let label = format!("record {}", hex_encode(&k));
            let rec = match decode_record(&v) {
                Ok(r) => r,
                Err(e) => {
                    report.damaged(label, format!("cannot be read: {e}"));
                    continue;
                }
            };
            report.records += 1;
            if rec.serial_bytes() != k.as_ref() {
                report.damaged(
                    &label,
                    format!("says serial {} but is stored under another", rec.serial),
                );
            }
            if rec.schema != SCHEMA_VERSION {
                report.damaged(&label, format!("schema version {}", rec.schema));
            }
            if (rec.status == Status::Revoked) != rec.revocation.is_some() {
                report.damaged(&label, "status and revocation details disagree");
            }
            if rec.status == Status::Expired {
                report.damaged(&label, "status `expired` is never stored");
            }
            self.check_certificate(&rec, &label, report)?;
            records.insert(k.to_vec(), rec);
        }
        self.check_indexes(&records, elsewhere, report)?;
        Ok(records)
    }

    fn check_certificate(&self, rec: &Record, label: &str, report: &mut CheckReport) -> Result<()> {
        let Some(kid) = hex_decode(&rec.issuer_key_id) else {
            report.damaged(label, "issuer key id is not hex");
            return Ok(());
        };
        let Some(der) = self
            .certs
            .get(cat(&[&kid, &rec.serial_bytes()]))
            .map_err(store_err)?
        else {
            report.damaged(label, "its certificate is missing");
            return Ok(());
        };
        let sha = ring::digest::digest(&ring::digest::SHA256, &der);
        if hex_encode(sha.as_ref()) != rec.sha256 {
            report.damaged(
                label,
                "the SHA-256 of its certificate differs from the record's",
            );
        }
        let cert = match X509Certificate::from_der(&der) {
            Ok(([], c)) => c,
            Ok(_) => {
                report.damaged(label, "its certificate has trailing bytes");
                return Ok(());
            }
            Err(e) => {
                report.damaged(label, format!("its certificate does not parse: {e}"));
                return Ok(());
            }
        };
        let serial = cert.raw_serial();
        let serial = match serial.first() {
            Some(0) if serial.len() > 1 => &serial[1..],
            _ => serial,
        };
        if serial != rec.serial_bytes().as_slice() {
            report.damaged(
                label,
                format!(
                    "its certificate has serial {}, the record {}",
                    hex_encode(serial),
                    rec.serial
                ),
            );
        }
        let not_after = cert.validity().not_after.to_datetime();
        if not_after != rec.not_after {
            report.damaged(
                label,
                format!(
                    "notAfter differs: certificate {not_after}, record {}",
                    rec.not_after
                ),
            );
        }
        if cert.validity().not_before.to_datetime() != rec.not_before {
            report.damaged(label, "notBefore differs between certificate and record");
        }
        let aki = cert
            .extensions()
            .iter()
            .find_map(|e| match e.parsed_extension() {
                x509_parser::extensions::ParsedExtension::AuthorityKeyIdentifier(a) => {
                    a.key_identifier.as_ref().map(|k| k.0.to_vec())
                }
                _ => None,
            });
        if aki.as_deref() != Some(kid.as_slice()) {
            report.damaged(
                label,
                "its certificate's authority key id is not the record's issuer",
            );
        }
        Ok(())
    }

    /// Every index entry points at a record that agrees, and every record has
    /// every index entry it needs.
    fn check_indexes(
        &self,
        records: &BTreeMap<Vec<u8>, Record>,
        elsewhere: &BTreeMap<Vec<u8>, Record>,
        report: &mut CheckReport,
    ) -> Result<()> {
        let want_certs = self.check_record_entries(records, report)?;
        self.check_cert_entries(&want_certs, report)?;
        self.check_sha256_entries(records, report)?;
        self.check_expiry_entries(records, report)?;
        self.check_name_entries(records, report)?;
        self.check_revocation_entries(records, report)?;
        self.check_request_entries(records, elsewhere, report)
    }

    /// Forward: each record's index entries are there. Returns the keys its
    /// certificates must be stored under.
    fn check_record_entries(
        &self,
        records: &BTreeMap<Vec<u8>, Record>,
        report: &mut CheckReport,
    ) -> Result<HashSet<Vec<u8>>> {
        let mut want_certs = HashSet::new();
        for (serial, rec) in records {
            let label = format!("record {}", rec.serial);
            if let Some(kid) = hex_decode(&rec.issuer_key_id) {
                want_certs.insert(cat(&[&kid, serial]));
            }
            match hex_decode(&rec.sha256) {
                Some(sha) => {
                    if self.sha256.get(&sha).map_err(store_err)?.as_deref() != Some(serial) {
                        report.damaged(&label, "missing from the SHA-256 index");
                    }
                }
                None => report.damaged(&label, "sha256 is not hex"),
            }
            if !self
                .expiry
                .contains_key(cat(&[&unix_be(rec.not_after), serial]))
                .map_err(store_err)?
            {
                report.damaged(&label, "missing from the expiry index");
            }
            for n in index_names(rec) {
                if !self
                    .names
                    .contains_key(cat(&[n.as_bytes(), &[0], serial]))
                    .map_err(store_err)?
                {
                    report.damaged(&label, format!("name `{n}` missing from the name index"));
                }
            }
            if let Some(id) = &rec.request_id {
                if self
                    .requests
                    .get(id.as_bytes())
                    .map_err(store_err)?
                    .as_deref()
                    != Some(serial.as_slice())
                {
                    report.damaged(&label, "missing from the request-id index");
                }
            }
        }
        Ok(want_certs)
    }

    /// Backward, certificates: each stored certificate has a record.
    fn check_cert_entries(
        &self,
        want_certs: &HashSet<Vec<u8>>,
        report: &mut CheckReport,
    ) -> Result<()> {
        for item in self.certs.iter() {
            let (k, _) = item.map_err(store_err)?;
            report.certificates += 1;
            if !want_certs.contains(k.as_ref()) {
                report.damaged(
                    format!("certificate {}", hex_encode(&k)),
                    "stored without a record",
                );
            }
        }
        Ok(())
    }

    /// Backward, fingerprints: each entry names a record with that SHA-256.
    fn check_sha256_entries(
        &self,
        records: &BTreeMap<Vec<u8>, Record>,
        report: &mut CheckReport,
    ) -> Result<()> {
        for item in self.sha256.iter() {
            let (k, serial) = item.map_err(store_err)?;
            let ok = records
                .get(serial.as_ref())
                .is_some_and(|r| hex_decode(&r.sha256).as_deref() == Some(k.as_ref()));
            if !ok {
                report.damaged(
                    format!("index sha256 {}", hex_encode(&k)),
                    format!(
                        "points at {}, which has no such fingerprint",
                        hex_encode(&serial)
                    ),
                );
            }
        }
        Ok(())
    }

    /// Backward, expiry: each entry names a record with that notAfter.
    fn check_expiry_entries(
        &self,
        records: &BTreeMap<Vec<u8>, Record>,
        report: &mut CheckReport,
    ) -> Result<()> {
        for item in self.expiry.iter() {
            let (k, _) = item.map_err(store_err)?;
            let ok = k.len() > 8
                && records
                    .get(&k[8..])
                    .is_some_and(|r| unix_be(r.not_after) == k[..8]);
            if !ok {
                report.damaged(
                    format!("index expiry {}", hex_encode(&k)),
                    "no record with this serial and notAfter",
                );
            }
        }
        Ok(())
    }

    /// Backward, names: each entry names a record that carries the name.
    fn check_name_entries(
        &self,
        records: &BTreeMap<Vec<u8>, Record>,
        report: &mut CheckReport,
    ) -> Result<()> {
        for item in self.names.iter() {
            let (k, _) = item.map_err(store_err)?;
            let ok = k.iter().position(|b| *b == 0).is_some_and(|i| {
                let name = String::from_utf8_lossy(&k[..i]);
                records
                    .get(&k[i + 1..])
                    .is_some_and(|r| index_names(r).iter().any(|n| *n == name))
            });
            if !ok {
                report.damaged(
                    format!("index names {}", hex_encode(&k)),
                    "no record with this serial carries this name",
                );
            }
        }
        Ok(())
    }

    /// Revocations (the `revoked` tree of the lifecycle half): each names a
    /// revoked record of its issuer with the same details, and each revoked
    /// record has one.
    fn check_revocation_entries(
        &self,
        records: &BTreeMap<Vec<u8>, Record>,
        report: &mut CheckReport,
    ) -> Result<()> {
        let by_cert_key: BTreeMap<Vec<u8>, &Record> = records
            .iter()
            .filter_map(|(serial, r)| {
                hex_decode(&r.issuer_key_id).map(|kid| (cat(&[&kid, serial]), r))
            })
            .collect();
        let revoked = self.db.open_tree("revoked").map_err(store_err)?;
        let mut revoked_keys = HashSet::new();
        for item in revoked.iter() {
            let (k, v) = item.map_err(store_err)?;
            revoked_keys.insert(k.to_vec());
            let entry: Option<super::Revocation> = serde_json::from_slice(&v).ok();
            let ok = by_cert_key.get(k.as_ref()).is_some_and(|r| {
                r.status == Status::Revoked && entry.is_some() && r.revocation == entry
            });
            if !ok {
                report.damaged(
                    format!("index revoked {}", hex_encode(&k)),
                    "no revoked record of this issuer and serial with these details",
                );
            }
        }
        for (serial, r) in records {
            if r.status == Status::Revoked {
                let kid = hex_decode(&r.issuer_key_id).unwrap_or_default();
                if !revoked_keys.contains(&cat(&[&kid, serial])) {
                    report.damaged(
                        format!("record {}", r.serial),
                        "revoked, but missing from the revocation index (CRLs would omit it)",
                    );
                }
            }
        }
        Ok(())
    }

    /// Backward, request ids: each entry names the record of that request id
    /// (here, or in the archive: `elsewhere`).
    fn check_request_entries(
        &self,
        records: &BTreeMap<Vec<u8>, Record>,
        elsewhere: &BTreeMap<Vec<u8>, Record>,
        report: &mut CheckReport,
    ) -> Result<()> {
        for item in self.requests.iter() {
            let (k, serial) = item.map_err(store_err)?;
            let ok = records
                .get(serial.as_ref())
                .or_else(|| elsewhere.get(serial.as_ref()))
                .is_some_and(|r| r.request_id.as_deref().map(str::as_bytes) == Some(k.as_ref()));
            if !ok {
                report.damaged(
                    format!("index requests `{}`", String::from_utf8_lossy(&k)),
                    format!(
                        "points at {}, which has another request id",
                        hex_encode(&serial)
                    ),
                );
            }
        }
        Ok(())
    }

    /// Verify the audit log's hash chain: sequence numbers run 0, 1, 2, ... with
    /// no gap, each entry carries the SHA-256 of the previous entry as stored, and
    /// the head kept in `meta` names the last entry. An edited, removed or
    /// inserted entry breaks it.
    pub fn verify_audit(&self) -> Result<AuditReport> {
        let mut report = AuditReport::default();
        let mut damaged = |item: String, problem: String| {
            report.damage.push(Damage { item, problem });
        };
        let mut expected_seq = 0u64;
        let mut prev_hash = "0".repeat(64);
        let mut last: Option<(u64, String)> = None;
        // One chain: the archive's older part (`store tidy`), then the hot part.
        let archive = self.archive()?.map(|a| a.audit.iter());
        for item in super::archive::merged(self.audit.iter(), archive) {
            let (k, v) = item.map_err(store_err)?;
            report.entries += 1;
            let key_seq = <[u8; 8]>::try_from(k.as_ref()).map(u64::from_be_bytes).ok();
            let label = match key_seq {
                Some(s) => format!("audit entry {s}"),
                None => format!("audit entry {}", hex_encode(&k)),
            };
            let hash = hex_encode(ring::digest::digest(&ring::digest::SHA256, &v).as_ref());
            match serde_json::from_slice::<AuditEntry>(&v) {
                Err(e) => damaged(label.clone(), format!("cannot be read: {e}")),
                Ok(e) => {
                    if Some(e.seq) != key_seq {
                        damaged(label.clone(), format!("says sequence {}", e.seq));
                    }
                    if e.prev != prev_hash {
                        damaged(
                            label.clone(),
                            "does not chain to the entry before it (that entry was edited or removed, or this one was inserted)".into(),
                        );
                    }
                }
            }
            if key_seq != Some(expected_seq) {
                damaged(
                    label,
                    format!("out of sequence: entry {expected_seq} was expected"),
                );
            }
            let seq = key_seq.unwrap_or(expected_seq);
            expected_seq = seq.wrapping_add(1);
            prev_hash = hash.clone();
            last = Some((seq, hash));
        }
        let head = self.meta.get(AUDIT_HEAD).map_err(store_err)?;
        match (&last, head) {
            (None, None) => {}
            (None, Some(_)) => damaged(
                "audit head".into(),
                "names an entry but the log is empty".into(),
            ),
            (Some(_), None) => damaged("audit head".into(), "missing".into()),
            (Some((seq, hash)), Some(h)) => {
                let ok =
                    h.len() == 40 && h[..8] == seq.to_be_bytes() && hex_encode(&h[8..]) == *hash;
                if !ok {
                    damaged(
                        "audit head".into(),
                        "does not name the last entry (the log's end was edited or removed)".into(),
                    );
                }
            }
        }
        report.head = last.map(|(_, h)| h);
        Ok(report)
    }

    /// Audit entries that still decode (for cross-checks; damage is reported by
    /// `verify_audit`).
    fn audit_entries_lenient(&self) -> Result<Vec<AuditEntry>> {
        let mut out = Vec::new();
        let archive = self.archive()?.map(|a| a.audit.iter());
        for item in super::archive::merged(self.audit.iter(), archive) {
            let (_, v) = item.map_err(store_err)?;
            if let Ok(e) = serde_json::from_slice::<AuditEntry>(&v) {
                out.push(e);
            }
        }
        Ok(out)
    }

    /// Write every tree, key and value to `out` as JSON lines (see the module doc).
    pub fn export(&self, out: &mut dyn Write) -> Result<ExportSummary> {
        let mut names: Vec<String> = self
            .db
            .tree_names()
            .into_iter()
            .map(|n| String::from_utf8_lossy(&n).into_owned())
            .collect();
        names.sort();
        let mut summary = ExportSummary {
            trees: BTreeMap::new(),
            lines: 0,
        };
        let write_err = |e: std::io::Error| Error::State(format!("cannot write the export: {e}"));
        for name in names {
            let tree = if name == DEFAULT_TREE {
                (*self.db).clone()
            } else {
                self.db.open_tree(&name).map_err(store_err)?
            };
            let mut n = 0usize;
            for item in tree.iter() {
                let (k, v) = item.map_err(store_err)?;
                let line = ExportLine {
                    tree: name.clone(),
                    key: hex_encode(&k),
                    value: hex_encode(&v),
                };
                serde_json::to_writer(&mut *out, &line).map_err(store_err)?;
                out.write_all(b"\n").map_err(write_err)?;
                n += 1;
            }
            summary.lines += n;
            summary.trees.insert(name, n);
        }
        out.flush().map_err(write_err)?;
        Ok(summary)
    }

    /// Load an export into this store, which must hold no certificate yet, then
    /// flush. The caller checks the result with `check`.
    pub fn import<R: BufRead>(&self, input: &mut R) -> Result<ExportSummary> {
        if !self.records.is_empty() || !self.audit.is_empty() || !self.certs.is_empty() {
            return Err(Error::State(
                "the store to restore into is not empty; refusing to mix two CAs".into(),
            ));
        }
        let mut summary = ExportSummary {
            trees: BTreeMap::new(),
            lines: 0,
        };
        let mut trees: BTreeMap<String, sled::Tree> = BTreeMap::new();
        let mut line = String::new();
        let mut number = 0usize;
        loop {
            line.clear();
            let n = <&mut R as std::io::Read>::take(&mut *input, MAX_IMPORT_LINE as u64 + 1)
                .read_line(&mut line)
                .map_err(|e| Error::input("store export", e.to_string()))?;
            if n == 0 {
                break;
            }
            number += 1;
            if n > MAX_IMPORT_LINE {
                return Err(Error::input(
                    "store export",
                    format!("line {number} is longer than {MAX_IMPORT_LINE} bytes"),
                ));
            }
            let bad = |m: &str| Error::input("store export", format!("line {number}: {m}"));
            let l: ExportLine = serde_json::from_str(line.trim_end())
                .map_err(|e| bad(&format!("not an export line: {e}")))?;
            let key = hex_decode(&l.key).ok_or_else(|| bad("key is not hex"))?;
            let value = hex_decode(&l.value).ok_or_else(|| bad("value is not hex"))?;
            if !trees.contains_key(&l.tree) {
                let t = if l.tree == DEFAULT_TREE {
                    (*self.db).clone()
                } else {
                    self.db.open_tree(&l.tree).map_err(store_err)?
                };
                trees.insert(l.tree.clone(), t);
            }
            trees[&l.tree].insert(key, value).map_err(store_err)?;
            *summary.trees.entry(l.tree).or_default() += 1;
            summary.lines += 1;
        }
        match self.meta.get(super::SCHEMA_KEY).map_err(store_err)? {
            Some(v) if v.as_ref() == SCHEMA_VERSION.to_be_bytes() => {}
            _ => {
                return Err(Error::State(format!(
                    "the export is not of store schema version {SCHEMA_VERSION}"
                )))
            }
        }
        self.flush()?;
        Ok(summary)
    }
}
