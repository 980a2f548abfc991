//! The layering the compiler does not hold by itself (issue 23): no import
//! cycle between the files of one crate.
//!
//! Cargo already refuses a crate that reaches up the crate graph. Inside a
//! crate, this test reads every `.rs` file of its `src/` and draws an edge from
//! a file to each module file it names (`crate::a::b::Item` → the file of
//! `a::b`; `super::x` likewise; a parent's `use child::...`), leaving out test
//! modules and the edges between a folder module's `mod.rs` and its own
//! children (a folder is one module: its `mod.rs` is its face). Any cycle
//! left is an error that names its files.
//!
//! Run alone: `cargo test --test it architecture`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Every `src/` of the workspace: the root package's and each crate's.
fn source_roots() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut out = vec![root.join("src")];
    if let Ok(crates) = std::fs::read_dir(root.join("crates")) {
        let mut dirs: Vec<PathBuf> = crates
            .flatten()
            .map(|e| e.path().join("src"))
            .filter(|p| p.is_dir())
            .collect();
        dirs.sort();
        out.extend(dirs);
    }
    out
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// The module path of a file relative to `src/` (`issue/mod.rs` → `issue`).
fn module_of(rel: &Path) -> Vec<String> {
    let mut parts: Vec<String> = rel
        .with_extension("")
        .iter()
        .map(|s| s.to_string_lossy().into_owned())
        .collect();
    if matches!(
        parts.last().map(String::as_str),
        Some("mod" | "lib" | "main")
    ) {
        parts.pop();
    }
    parts
}

/// The source without its `#[cfg(test)] mod tests` (test code may reach anywhere).
fn without_tests(src: &str) -> &str {
    match src.find("#[cfg(test)]\nmod tests") {
        Some(i) => &src[..i],
        None => match src.find("#[cfg(test)]\npub(crate) mod tests") {
            Some(i) => &src[..i],
            None => src,
        },
    }
}

/// The paths named after each occurrence of `prefix` (`crate::a::b::C` → `a::b::C`).
fn paths_after<'s>(src: &'s str, prefix: &str) -> Vec<&'s str> {
    let mut out = Vec::new();
    let mut rest = src;
    while let Some(i) = rest.find(prefix) {
        let before = rest[..i].chars().last();
        let after = &rest[i + prefix.len()..];
        let end = after
            .find(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':' || c == '*'))
            .unwrap_or(after.len());
        if !before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
            out.push(after[..end].trim_end_matches(':'));
        }
        rest = &after[end..];
    }
    out
}

/// The cycles among the files of one `src/` directory.
fn cycles(src_root: &Path) -> Vec<Vec<String>> {
    let mut files = Vec::new();
    rust_files(src_root, &mut files);
    let mut modules: BTreeMap<Vec<String>, String> = BTreeMap::new();
    let mut sources = BTreeMap::new();
    for f in &files {
        let rel = f.strip_prefix(src_root).unwrap();
        let name = rel.to_string_lossy().into_owned();
        modules.insert(module_of(rel), name.clone());
        sources.insert(name, (module_of(rel), std::fs::read_to_string(f).unwrap()));
    }
    let resolve = |parts: &[String]| -> Option<String> {
        (0..=parts.len())
            .rev()
            .find_map(|n| modules.get(&parts[..n]).cloned())
    };
    let parent_or_child = |a: &[String], b: &[String]| {
        (a.len() + 1 == b.len() && b[..a.len()] == *a)
            || (b.len() + 1 == a.len() && a[..b.len()] == *b)
    };
    let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (name, (me, src)) in &sources {
        let src = without_tests(src);
        let mut named: Vec<Vec<String>> = Vec::new();
        for p in paths_after(src, "crate::") {
            named.push(p.split("::").map(str::to_string).collect());
        }
        let parent: Vec<String> = me[..me.len().saturating_sub(1)].to_vec();
        for p in paths_after(src, "super::") {
            let mut v = parent.clone();
            v.extend(p.split("::").filter(|s| *s != "*").map(str::to_string));
            named.push(v);
        }
        for line in src.lines() {
            let l = line.trim_start();
            let l = l
                .strip_prefix("pub(crate) ")
                .or_else(|| l.strip_prefix("pub "))
                .unwrap_or(l);
            if let Some(rest) = l.strip_prefix("use ") {
                if let Some(first) = rest.split("::").next() {
                    let mut v = me.clone();
                    v.push(first.to_string());
                    if modules.contains_key(&v) {
                        named.push(v);
                    }
                }
            }
        }
        let out = edges.entry(name.clone()).or_default();
        for n in named {
            if let Some(target) = resolve(&n) {
                let target_mod = &sources[&target].0;
                if target != *name && !parent_or_child(me, target_mod) {
                    out.insert(target);
                }
            }
        }
    }
    strongly_connected(&edges)
}

/// Tarjan's strongly connected components of more than one file.
fn strongly_connected(edges: &BTreeMap<String, BTreeSet<String>>) -> Vec<Vec<String>> {
    struct T<'e> {
        edges: &'e BTreeMap<String, BTreeSet<String>>,
        index: BTreeMap<String, usize>,
        low: BTreeMap<String, usize>,
        stack: Vec<String>,
        on: BTreeSet<String>,
        next: usize,
        found: Vec<Vec<String>>,
    }
    fn visit(t: &mut T<'_>, v: &str) {
        t.index.insert(v.to_string(), t.next);
        t.low.insert(v.to_string(), t.next);
        t.next += 1;
        t.stack.push(v.to_string());
        t.on.insert(v.to_string());
        let next: Vec<String> = t.edges.get(v).into_iter().flatten().cloned().collect();
        for w in next {
            if !t.index.contains_key(&w) {
                visit(t, &w);
                let lw = t.low[&w];
                let lv = t.low.get_mut(v).unwrap();
                *lv = (*lv).min(lw);
            } else if t.on.contains(&w) {
                let iw = t.index[&w];
                let lv = t.low.get_mut(v).unwrap();
                *lv = (*lv).min(iw);
            }
        }
        if t.low[v] == t.index[v] {
            let mut comp = Vec::new();
            while let Some(w) = t.stack.pop() {
                t.on.remove(&w);
                let done = w == v;
                comp.push(w);
                if done {
                    break;
                }
            }
            if comp.len() > 1 {
                comp.sort();
                t.found.push(comp);
            }
        }
    }
    let mut t = T {
        edges,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on: BTreeSet::new(),
        next: 0,
        found: Vec::new(),
    };
    for v in edges.keys() {
        if !t.index.contains_key(v) {
            visit(&mut t, v);
        }
    }
    t.found
}

#[test]
fn no_file_of_a_crate_imports_in_a_circle() {
    let mut found = Vec::new();
    for root in source_roots() {
        for c in cycles(&root) {
            found.push(format!("{}: {}", root.display(), c.join(" -> ")));
        }
    }
    assert!(found.is_empty(), "import cycles:\n{}", found.join("\n"));
}

#[test]
fn the_cycle_finder_finds_a_cycle() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path();
    std::fs::write(src.join("lib.rs"), "mod a;\nmod b;\nmod c;\n").unwrap();
    std::fs::write(src.join("a.rs"), "use crate::b::B;\npub struct A;\n").unwrap();
    std::fs::write(src.join("b.rs"), "pub struct B(crate::c::C);\n").unwrap();
    std::fs::write(src.join("c.rs"), "pub struct C(crate::a::A);\n").unwrap();
    assert_eq!(cycles(src), vec![vec!["a.rs", "b.rs", "c.rs"]]);
    std::fs::write(src.join("c.rs"), "pub struct C;\n").unwrap();
    assert!(cycles(src).is_empty());
}
