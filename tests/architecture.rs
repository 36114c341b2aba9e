//! The layout is the architecture: the library's modules form a tree of
//! dependencies, with no module importing one that imports it back, and the
//! library knows nothing of the command line. Read from the source, so a
//! new import that closes a cycle fails here with the cycle named.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Every library source file as its module path (`delivery::core`) and its
/// code, without comments and without its `#[cfg(test)]` tail.
fn modules() -> BTreeMap<Vec<String>, String> {
    fn walk(dir: &Path, out: &mut BTreeMap<Vec<String>, String>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(&path, out);
                continue;
            }
            if path.extension().is_none_or(|e| e != "rs") {
                continue;
            }
            let rel = path.strip_prefix("src").unwrap().with_extension("");
            let mut parts: Vec<String> = rel.iter().map(|p| p.to_string_lossy().into_owned()).collect();
            if parts.last().is_some_and(|p| p == "mod") {
                parts.pop();
            }
            if parts == ["main"] || parts == ["lib"] || parts.first().is_some_and(|p| p == "cli") {
                continue;
            }
            let text = std::fs::read_to_string(&path).unwrap();
            let code = text.split("#[cfg(test)]").next().unwrap();
            let code: String = code.lines().map(|l| l.split("//").next().unwrap()).collect::<Vec<_>>().join("\n");
            out.insert(parts, code);
        }
    }
    let mut out = BTreeMap::new();
    walk(Path::new("src"), &mut out);
    out
}

/// Edges between top-level modules, and between sibling modules of one
/// parent, from `crate::a::b` and `super::b` paths.
fn edges(modules: &BTreeMap<Vec<String>, String>) -> BTreeMap<String, BTreeSet<String>> {
    let known: BTreeSet<String> = modules.keys().map(|m| m.join("::")).collect();
    let path = regex::Regex::new(r"\b(crate|super)((?:::[a-z_][a-z0-9_]*)+)").unwrap();
    let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (module, code) in modules {
        for m in path.captures_iter(code) {
            let names: Vec<String> = m[2].trim_start_matches("::").split("::").map(str::to_owned).collect();
            let target: Vec<String> = match &m[1] {
                "crate" => names,
                _ if module.len() < 2 => continue,
                _ => module[..module.len() - 1].iter().cloned().chain(names).collect(),
            };
            // Top level: `crate::spec::…` from `delivery::…`.
            if target[0] != module[0] && known.contains(&target[0]) {
                edges.entry(module[0].clone()).or_default().insert(target[0].clone());
            }
            // Siblings: `delivery::driver` -> `delivery::core`.
            if module.len() >= 2 && target.len() >= 2 && target[..module.len() - 1] == module[..module.len() - 1] {
                let sibling = target[..module.len()].join("::");
                if sibling != module.join("::") && known.contains(&sibling) {
                    edges.entry(module.join("::")).or_default().insert(sibling);
                }
            }
        }
    }
    edges
}

fn find_cycle(edges: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
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
        if !done.insert(node.to_owned()) {
            return None;
        }
        stack.push(node.to_owned());
        for next in edges.get(node).into_iter().flatten() {
            if let Some(cycle) = visit(next, edges, stack, done) {
                return Some(cycle);
            }
        }
        stack.pop();
        None
    }
    let mut done = BTreeSet::new();
    edges.keys().find_map(|node| visit(node, edges, &mut Vec::new(), &mut done))
}

#[test]
fn the_module_imports_form_a_tree() {
    let edges = edges(&modules());
    assert!(edges.get("delivery").is_some_and(|e| e.contains("spec")), "the graph was read: {edges:?}");
    if let Some(cycle) = find_cycle(&edges) {
        panic!("import cycle: {}", cycle.join(" -> "));
    }
}

#[test]
fn a_cycle_is_found_and_named() {
    let mut modules = BTreeMap::new();
    modules.insert(vec!["a".to_owned()], "use crate::b::X;".to_owned());
    modules.insert(vec!["b".to_owned(), "inner".to_owned()], "use crate::a::Y;".to_owned());
    modules.insert(vec!["b".to_owned()], String::new());
    assert_eq!(find_cycle(&edges(&modules)), Some(vec!["a".into(), "b".into(), "a".into()]));
}

#[test]
fn the_library_does_not_use_the_command_line() {
    for (module, code) in modules() {
        assert!(!code.contains("clap"), "src/{} uses clap; the command line belongs in src/cli", module.join("/"));
    }
}

/// One build, nothing fetched outside Cargo: no task script downloads or
/// names a download host (the broker used to be fetched with curl and built
/// on the side).
#[test]
fn no_task_script_downloads_anything() {
    let mut scripts = vec![Path::new("justfile").to_path_buf()];
    for dir in [".ci", "tools"] {
        let mut stack = vec![Path::new(dir).to_path_buf()];
        while let Some(dir) = stack.pop() {
            for entry in std::fs::read_dir(&dir).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    stack.push(path);
                } else {
                    scripts.push(path);
                }
            }
        }
    }
    for script in scripts {
        let text = std::fs::read_to_string(&script).unwrap_or_default();
        for word in ["curl ", "wget ", "http://", "https://"] {
            assert!(!text.contains(word), "{} contains {word:?}", script.display());
        }
    }
}

/// The broker's storage crate is streamlab's patched copy: no stock
/// `tansu-storage` anywhere in the build, and the copy comes from `vendor/`.
#[test]
fn the_broker_storage_is_the_vendored_copy() {
    let lock = std::fs::read_to_string("Cargo.lock").unwrap();
    let packages: Vec<&str> = lock.split("[[package]]").collect();
    assert!(!packages.iter().any(|p| p.contains("name = \"tansu-storage\"")), "a stock tansu-storage is in Cargo.lock");
    let vendored = packages
        .iter()
        .find(|p| p.contains("name = \"streamlab-tansu-storage\""))
        .expect("streamlab-tansu-storage in Cargo.lock");
    assert!(!vendored.contains("source ="), "streamlab-tansu-storage comes from a registry: {vendored}");
    let manifest = std::fs::read_to_string("Cargo.toml").unwrap();
    assert!(manifest.contains("path = \"vendor/tansu-storage\""), "Cargo.toml takes tansu-storage from vendor/");
}
