//! The library's layers stay layered: every `crate::` path in the non-test code of a module
//! names a module of its own layer or a lower one (`stablefs::LAYERS`, bottom first, as
//! `src/lib.rs` explains), no module reaches one above it, and no modules use each other in
//! a circle. Every module under `src/` must be in the list, so a new one gets a place.
//!
//! Test code (`tests.rs`, `*_tests.rs`, files under a `tests/` folder, and items marked
//! `#[cfg(test)]`) may use anything: a test of `fs` builds its device with `mkfs`.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

/// Every `.rs` file under `dir`.
fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in fs::read_dir(dir).unwrap() {
        let p = entry.unwrap().path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|e| e == "rs") {
            out.push(p);
        }
    }
}

fn is_test_file(rel: &Path) -> bool {
    let name = rel.file_stem().unwrap().to_str().unwrap();
    name == "tests"
        || name.ends_with("_tests")
        || rel.components().any(|c| c.as_os_str() == "tests")
}

/// `source` without the items marked `#[cfg(test)]` (the attribute and the item after it,
/// up to its `;` or its closing brace) and without comments.
fn non_test_code(source: &str) -> String {
    let mut out = String::new();
    let mut lines = source.lines();
    while let Some(line) = lines.next() {
        let code = line.split("//").next().unwrap();
        if code.trim() != "#[cfg(test)]" {
            out.push_str(code);
            out.push('\n');
            continue;
        }
        // Skip the item: to a `;` before any brace, or to the brace that closes its first.
        let mut depth = 0i32;
        let mut opened = false;
        for l in lines.by_ref() {
            let l = l.split("//").next().unwrap();
            for ch in l.chars() {
                match ch {
                    '{' => {
                        depth += 1;
                        opened = true;
                    }
                    '}' => depth -= 1,
                    _ => {}
                }
            }
            if (opened && depth == 0) || (!opened && l.trim_end().ends_with(';')) {
                break;
            }
        }
    }
    out
}

/// The top-level modules `code` names with `crate::NAME`, or `crate::{NAME::..., ...}`.
fn crate_paths(code: &str) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    for (at, _) in code.match_indices("crate::") {
        // `stablefs::crate::` cannot happen; skip identifiers that merely end in "crate".
        if code[..at]
            .chars()
            .next_back()
            .is_some_and(|c| c.is_alphanumeric() || c == '_')
        {
            continue;
        }
        let rest = &code[at + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            // Top-level names of the group: after `{` or a `,` at nesting depth 0.
            let mut depth = 0;
            let mut start = true;
            for (i, ch) in group.char_indices() {
                match ch {
                    '{' => depth += 1,
                    '}' if depth == 0 => break,
                    '}' => depth -= 1,
                    ',' if depth == 0 => start = true,
                    c if start && (c.is_alphabetic() || c == '_') => {
                        let name: String = group[i..]
                            .chars()
                            .take_while(|c| c.is_alphanumeric() || *c == '_')
                            .collect();
                        found.insert(name);
                        start = false;
                    }
                    _ => {}
                }
            }
        } else {
            let name: String = rest
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            if !name.is_empty() {
                found.insert(name);
            }
        }
    }
    found
}

/// For each library module (a top-level file or folder of `src/`), the modules it uses.
fn uses(src: &Path) -> BTreeMap<String, BTreeSet<String>> {
    let mut files = Vec::new();
    rust_files(src, &mut files);
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for file in files {
        let rel = file.strip_prefix(src).unwrap();
        let top = rel
            .components()
            .next()
            .unwrap()
            .as_os_str()
            .to_str()
            .unwrap();
        let module = top.trim_end_matches(".rs").to_string();
        // The binary (main.rs, cli/) sits on top of everything; lib.rs only declares.
        if ["main", "cli", "lib"].contains(&module.as_str()) || is_test_file(rel) {
            continue;
        }
        let code = non_test_code(&fs::read_to_string(&file).unwrap());
        let used = graph.entry(module.clone()).or_default();
        for m in crate_paths(&code) {
            if m != module {
                used.insert(m);
            }
        }
    }
    graph
}

/// The problems with `graph` against `layers`: unknown modules, upward uses, circles.
fn violations(graph: &BTreeMap<String, BTreeSet<String>>, layers: &[&[&str]]) -> Vec<String> {
    let rank = |m: &str| layers.iter().position(|l| l.contains(&m));
    let mut problems = Vec::new();
    for (module, used) in graph {
        let Some(r) = rank(module) else {
            problems.push(format!(
                "module `{module}` is not in stablefs::LAYERS: give it a place"
            ));
            continue;
        };
        for u in used {
            // Names that are not modules (`crate::Result`, a re-export) have no rank: they
            // are checked where they are defined.
            if let Some(ru) = rank(u).filter(|&ru| ru > r) {
                problems.push(format!(
                    "`{module}` (layer {r}) uses `{u}` (layer {ru}), a layer above it"
                ));
            }
        }
    }
    for layer in layers {
        for m in *layer {
            if !graph.contains_key(*m) {
                problems.push(format!(
                    "stablefs::LAYERS names `{m}`, which is not in src/"
                ));
            }
        }
    }
    // Circles: a depth-first search over the use graph.
    fn visit<'a>(
        m: &'a str,
        graph: &'a BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<&'a str>,
        done: &mut BTreeSet<&'a str>,
        problems: &mut Vec<String>,
    ) {
        if let Some(i) = path.iter().position(|p| *p == m) {
            let mut circle = path[i..].to_vec();
            circle.push(m);
            problems.push(format!("modules use each other: {}", circle.join(" -> ")));
            return;
        }
        if !done.insert(m) {
            return;
        }
        path.push(m);
        for u in graph.get(m).into_iter().flatten() {
            visit(u, graph, path, done, problems);
        }
        path.pop();
    }
    let mut done = BTreeSet::new();
    for m in graph.keys() {
        visit(m, graph, &mut Vec::new(), &mut done, &mut problems);
    }
    problems
}

#[test]
fn no_module_uses_a_layer_above_it_or_a_circle() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let graph = uses(&src);
    for (m, used) in &graph {
        eprintln!("{m} uses {used:?}");
    }
    let problems = violations(&graph, stablefs::LAYERS);
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn the_check_finds_what_it_must() {
    let code = "use crate::fs::Fs;\nuse crate::{tree::Tree, format::{Key, Item}};\n\
                let x = crate::txn::Meta::open();\nfn screate::no() {}\n";
    assert_eq!(
        crate_paths(code),
        ["format", "fs", "tree", "txn"]
            .into_iter()
            .map(String::from)
            .collect()
    );
    let stripped = non_test_code(
        "use crate::a::X;\n#[cfg(test)]\nmod tests;\n#[cfg(test)]\nmod inline {\n    use crate::b::Y;\n}\nuse crate::c::Z; // crate::d\n",
    );
    assert_eq!(
        crate_paths(&stripped),
        ["a", "c"].into_iter().map(String::from).collect()
    );
    let layers: &[&[&str]] = &[&["low"], &["mid", "side"], &["high"]];
    let graph = |edges: &[(&str, &str)]| {
        let mut g: BTreeMap<String, BTreeSet<String>> = ["low", "mid", "side", "high"]
            .iter()
            .map(|m| (m.to_string(), BTreeSet::new()))
            .collect();
        for (a, b) in edges {
            g.get_mut(*a).unwrap().insert(b.to_string());
        }
        g
    };
    assert!(violations(&graph(&[("high", "mid"), ("mid", "low")]), layers).is_empty());
    let up = violations(&graph(&[("low", "high")]), layers);
    assert!(up.len() == 1 && up[0].contains("a layer above"), "{up:?}");
    let circle = violations(&graph(&[("mid", "side"), ("side", "mid")]), layers);
    assert!(
        circle.iter().any(|p| p.contains("use each other")),
        "{circle:?}"
    );
    let mut unknown = graph(&[]);
    unknown.insert("new".into(), BTreeSet::new());
    assert!(violations(&unknown, layers)[0].contains("not in stablefs::LAYERS"));
}
