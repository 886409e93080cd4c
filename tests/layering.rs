//! The crate's shape, held: every `crate::` path in `src/` must point to a module of the same
//! layer or a lower one (the table in `src/lib.rs`), the top-level modules must not form a
//! cycle, and the leaves that everything uses (limits, clock, rand; the partition hash and the
//! ring vocabulary) must stay leaves. The Rust form of TigerBeetle's `tidy.zig`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The layers, lowest first (as `src/lib.rs` documents them).
const LAYERS: [&[&str]; 9] = [
    &[
        "limits", "clock", "rand", "config", "protocol", "framing", "router", "metrics",
    ],
    &["history"],
    &["engine", "broker"],
    &["fanout"],
    &["shard"],
    &["auth", "session", "api"],
    &["http", "transport"],
    &["net"],
    &["server"],
];

/// Items of the crate root (`lib.rs`) any module may use.
const ROOT_ITEMS: [&str; 2] = ["VERSION", "EXIT_SYNC_FAILED"];

fn layer_of(module: &str) -> Option<usize> {
    LAYERS.iter().position(|layer| layer.contains(&module))
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("src is readable") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// A reference from a file to a module: (file, line, the module's path after `crate::`).
struct Reference {
    file: String,
    line: usize,
    path: String,
}

/// The module path a file defines, relative to `src/` (`shard/ask.rs` → `shard::ask`).
fn module_path(src: &Path, file: &Path) -> String {
    let relative = file.strip_prefix(src).expect("under src");
    let mut parts: Vec<String> = relative
        .with_extension("")
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    if parts.last().is_some_and(|p| p == "mod") {
        parts.pop();
    }
    parts.join("::")
}

/// Every `crate::a::b` path in the code (comments removed), with the line it starts on. A
/// group (`use crate::{a, b::{c, d}}`, on one line or several) yields each of its paths.
fn references(src: &Path, file: &Path) -> Vec<Reference> {
    let text = std::fs::read_to_string(file).expect("readable");
    let name = file.strip_prefix(src).unwrap().display().to_string();
    let code: String = text
        .lines()
        .map(|line| line.split("//").next().unwrap_or(""))
        .collect::<Vec<_>>()
        .join("\n");
    let mut out = Vec::new();
    let mut at = 0;
    while let Some(found) = code[at..].find("crate::") {
        let start = at + found;
        at = start + "crate::".len();
        // Not part of a longer identifier (`ringcast_crate::`).
        let before = code[..start].chars().last();
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
            continue;
        }
        let line = code[..start].matches('\n').count() + 1;
        let (paths, _) = expand(&code[at..]);
        for path in paths {
            out.push(Reference {
                file: name.clone(),
                line,
                path,
            });
        }
    }
    out
}

/// The paths a use-tree at the start of `text` names, and the bytes it takes: `a::b` is one,
/// `a::{b, c::{d}}` is `a::b` and `a::c::d`.
fn expand(text: &str) -> (Vec<String>, usize) {
    let ident_end = text
        .find(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':'))
        .unwrap_or(text.len());
    let prefix = text[..ident_end].trim_end_matches(':');
    let rest = &text[ident_end..];
    let group = rest.starts_with('{') && (ident_end == 0 || text[..ident_end].ends_with("::"));
    if !group {
        return (vec![prefix.to_owned()], ident_end);
    }
    // A group: members separated by top-level commas, up to the matching brace.
    let mut paths = Vec::new();
    let mut i = 1;
    loop {
        let member = &rest[i..];
        let skip = member.len() - member.trim_start().len();
        let member = member.trim_start();
        if member.starts_with('}') {
            i += skip + 1;
            break;
        }
        if member.is_empty() {
            break;
        }
        let (inner, used) = expand(member);
        for path in inner {
            let joined = if prefix.is_empty() {
                path
            } else {
                format!("{prefix}::{path}")
            };
            paths.push(joined);
        }
        i += skip + used;
        let after = &rest[i..];
        let comma = after.len() - after.trim_start().len();
        i += comma;
        if rest[i..].starts_with(',') {
            i += 1;
        }
    }
    (
        paths
            .into_iter()
            .filter(|p| !p.ends_with("::self"))
            .collect(),
        ident_end + i,
    )
}

/// Every file of the crate with its module path and references.
fn crate_map() -> Vec<(String, Vec<Reference>)> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    files.sort();
    files
        .iter()
        .map(|file| (module_path(&src, file), references(&src, file)))
        .collect()
}

fn top(path: &str) -> &str {
    path.split("::").next().unwrap_or(path)
}

#[test]
fn every_module_has_a_layer() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut missing = Vec::new();
    for (module, _) in crate_map() {
        let top = top(&module);
        if !["lib", "main"].contains(&top) && layer_of(top).is_none() {
            missing.push(module);
        }
    }
    assert!(
        missing.is_empty(),
        "modules without a layer (add them to LAYERS here and the table in {}): {missing:?}",
        src.join("lib.rs").display()
    );
}

#[test]
fn imports_run_down_the_layers() {
    let mut upward = Vec::new();
    for (module, references) in crate_map() {
        let Some(from) = layer_of(top(&module)) else {
            continue;
        };
        for r in references {
            let target = top(&r.path);
            if ROOT_ITEMS.contains(&target) {
                continue;
            }
            let to = layer_of(target).unwrap_or_else(|| {
                panic!(
                    "{}:{}: crate::{} names no known module",
                    r.file, r.line, r.path
                )
            });
            if to > from {
                upward.push(format!(
                    "{}:{}: {} (layer {from}) imports crate::{} (layer {to})",
                    r.file,
                    r.line,
                    top(&module),
                    r.path
                ));
            }
        }
    }
    assert!(
        upward.is_empty(),
        "imports against the layers:\n{}",
        upward.join("\n")
    );
}

#[test]
fn top_level_modules_form_no_cycle() {
    let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut seen_at: BTreeMap<(String, String), String> = BTreeMap::new();
    for (module, references) in crate_map() {
        let from = top(&module).to_owned();
        for r in references {
            let to = top(&r.path).to_owned();
            if to != from && layer_of(&to).is_some() {
                seen_at
                    .entry((from.clone(), to.clone()))
                    .or_insert(format!("{}:{}", r.file, r.line));
                edges.entry(from.clone()).or_default().insert(to);
            }
        }
    }
    // Depth-first search; a node met again while on the stack closes a cycle.
    fn visit(
        node: &str,
        edges: &BTreeMap<String, BTreeSet<String>>,
        stack: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(at) = stack.iter().position(|n| n == node) {
            let mut cycle = stack[at..].to_vec();
            cycle.push(node.to_owned());
            return Some(cycle);
        }
        if done.contains(node) {
            return None;
        }
        stack.push(node.to_owned());
        for next in edges.get(node).into_iter().flatten() {
            if let Some(cycle) = visit(next, edges, stack, done) {
                return Some(cycle);
            }
        }
        stack.pop();
        done.insert(node.to_owned());
        None
    }
    let mut done = BTreeSet::new();
    for node in edges.keys() {
        if let Some(cycle) = visit(node, &edges, &mut Vec::new(), &mut done) {
            let steps: Vec<String> = cycle
                .windows(2)
                .map(|w| {
                    format!(
                        "{} → {} ({})",
                        w[0],
                        w[1],
                        seen_at[&(w[0].clone(), w[1].clone())]
                    )
                })
                .collect();
            panic!("a cycle between top-level modules:\n{}", steps.join("\n"));
        }
    }
}

#[test]
fn the_leaves_stay_leaves() {
    // What each leaf may import of the crate.
    let allowed: [(&str, &[&str]); 6] = [
        ("limits", &[]),
        ("clock", &[]),
        ("rand", &[]),
        ("router::partition", &["limits"]),
        (
            "router::msg",
            &["protocol", "metrics::counters", "metrics::latency"],
        ),
        ("protocol", &["protocol", "rand", "limits"]),
    ];
    let mut wrong = Vec::new();
    for (module, references) in crate_map() {
        let Some((_, may)) = allowed
            .iter()
            .find(|(leaf, _)| module == *leaf || module.starts_with(&format!("{leaf}::")))
        else {
            continue;
        };
        for r in references {
            if !may
                .iter()
                .any(|m| r.path == *m || r.path.starts_with(&format!("{m}::")))
            {
                wrong.push(format!(
                    "{}:{}: {module} imports crate::{}",
                    r.file, r.line, r.path
                ));
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "leaves that are not leaves:\n{}",
        wrong.join("\n")
    );
}

#[test]
fn the_scanner_sees_paths_groups_and_skips_comments() {
    let dir = std::env::temp_dir().join(format!("ringcast-layering-{}", std::process::id()));
    std::fs::create_dir_all(dir.join("shard")).unwrap();
    let file = dir.join("shard/x.rs");
    std::fs::write(
        &file,
        "use crate::{clock, router::msg};\n// crate::server in a comment\nlet x = crate::net::y;\nuse crate::{\n    metrics::{counters, prometheus},\n    limits,\n};\n",
    )
    .unwrap();
    let found: Vec<String> = references(&dir, &file)
        .into_iter()
        .map(|r| r.path)
        .collect();
    assert_eq!(
        found,
        [
            "clock",
            "router::msg",
            "net::y",
            "metrics::counters",
            "metrics::prometheus",
            "limits"
        ]
    );
    assert_eq!(module_path(&dir, &file), "shard::x");
    std::fs::remove_dir_all(&dir).unwrap();
}
