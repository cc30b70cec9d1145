//! The shape of `src/`, checked: dependencies between files point one way (no import circle),
//! only `main.rs` reaches `startup`, and no file grows past the size a reader can hold.
//!
//! The import graph is read from the source text: every `crate::…`, `super::…` and `self::…`
//! path (in `use` trees and inline), resolved to the file that defines the module it names.
//! A `mod x;` declaration is not an import (a parent owns its children); a `pub use` is. Test
//! modules (`#[cfg(test)] mod tests`) are left out: they may look anywhere.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

const SRC: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/src");

/// Longest a file in `src/` may be, in lines (the architecture's "about 600").
const MAX_LINES: usize = 650;

/// A source file and the module path it defines (`["transport", "http", "gate"]`).
struct File {
    path: PathBuf,
    module: Vec<String>,
    text: String,
}

fn files() -> Vec<File> {
    let mut out = Vec::new();
    walk(Path::new(SRC), &mut out);
    out.sort_by(|a, b| a.path.cmp(&b.path));
    out
}

fn walk(dir: &Path, out: &mut Vec<File>) {
    for entry in std::fs::read_dir(dir).expect("src/ is readable") {
        let path = entry.expect("a directory entry").path();
        if path.is_dir() {
            walk(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            let rel = path.strip_prefix(SRC).expect("under src/");
            let mut module: Vec<String> = rel
                .with_extension("")
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect();
            if matches!(
                module.last().map(String::as_str),
                Some("mod" | "lib" | "main")
            ) {
                module.pop();
            }
            let text = std::fs::read_to_string(&path).expect("a readable source file");
            out.push(File { path, module, text });
        }
    }
}

/// The text without comments, string literals and `#[cfg(test)]` modules.
fn code_of(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut lines = text.lines().peekable();
    while let Some(line) = lines.next() {
        let trimmed = line.trim_start();
        if trimmed.starts_with("#[cfg(test)]")
            && lines
                .peek()
                .is_some_and(|next| next.trim_start().starts_with("mod "))
        {
            // By convention the test module is the last item of a file.
            break;
        }
        if trimmed.starts_with("//") {
            continue;
        }
        // Drop string literals (a message may say `crate::x`), then a trailing comment.
        let mut in_str = false;
        let mut prev = '\0';
        let mut kept = String::new();
        for c in line.chars() {
            if c == '"' && prev != '\\' {
                in_str = !in_str;
            } else if !in_str {
                kept.push(c);
            }
            prev = if prev == '\\' && c == '\\' { '\0' } else { c };
        }
        if let Some(at) = kept.find("//") {
            kept.truncate(at);
        }
        out.push_str(&kept);
        out.push('\n');
    }
    out
}

/// Every path a file names, as absolute module paths (`crate::a::b` → `["a", "b"]`).
///
/// A path may also start with a child module's name (`pub use cache::TenantCache;` in
/// `tenant.rs`): `children` lists the current module's children that are files.
fn paths_in(
    code: &str,
    module: &[String],
    is_mod_rs: bool,
    children: &BTreeSet<String>,
) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    let bytes: Vec<char> = code.chars().collect();
    let mut i = 0;
    while i < bytes.len() {
        let at_word_start = (i == 0 || !(bytes[i - 1].is_alphanumeric() || bytes[i - 1] == '_'))
            && !(i >= 2 && bytes[i - 1] == ':' && bytes[i - 2] == ':');
        if at_word_start {
            let word: String = bytes[i..]
                .iter()
                .take_while(|c| c.is_alphanumeric() || **c == '_')
                .collect();
            let followed_by_path = bytes[i + word.len()..].starts_with(&[':', ':']);
            let rooted = matches!(word.as_str(), "crate" | "super" | "self");
            if followed_by_path && (rooted || children.contains(&word)) {
                let (tree, next) = read_tree(&bytes, i);
                for path in expand(&tree) {
                    let path = if rooted {
                        path
                    } else {
                        std::iter::once("self".to_owned()).chain(path).collect()
                    };
                    if let Some(abs) = absolute(&path, module, is_mod_rs) {
                        out.push(abs);
                    }
                }
                i = next.max(i + 1);
                continue;
            }
            i += word.len().max(1);
            continue;
        }
        i += 1;
    }
    out
}

/// Reads a path or use tree starting at `start`: identifiers, `::`, `{`, `}`, `,`, `*`, `as`.
fn read_tree(chars: &[char], start: usize) -> (String, usize) {
    let mut depth = 0usize;
    let mut i = start;
    let mut out = String::new();
    while i < chars.len() {
        let c = chars[i];
        match c {
            '{' => depth += 1,
            '}' if depth == 0 => break,
            '}' => depth -= 1,
            ',' if depth == 0 => break,
            c if c.is_alphanumeric() || matches!(c, '_' | ':' | '*') => {}
            c if c.is_whitespace() && depth > 0 => {}
            ',' => {}
            _ => break,
        }
        out.push(c);
        i += 1;
    }
    (out, i)
}

/// Expands a use tree into its leaf paths (`a::{b, c::d}` → `a::b`, `a::c::d`).
fn expand(tree: &str) -> Vec<Vec<String>> {
    let tree: String = tree.chars().filter(|c| !c.is_whitespace()).collect();
    fn go(prefix: &[String], rest: &str, out: &mut Vec<Vec<String>>) {
        if let Some(open) = rest.find('{') {
            let head: Vec<String> = rest[..open]
                .split("::")
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect();
            let inner = &rest[open + 1..rest.rfind('}').unwrap_or(rest.len())];
            let mut base = prefix.to_vec();
            base.extend(head);
            let mut depth = 0;
            let mut part = String::new();
            for c in inner.chars() {
                match c {
                    '{' => depth += 1,
                    '}' => depth -= 1,
                    ',' if depth == 0 => {
                        go(&base, &part, out);
                        part.clear();
                        continue;
                    }
                    _ => {}
                }
                part.push(c);
            }
            if !part.is_empty() {
                go(&base, &part, out);
            }
        } else {
            let mut path = prefix.to_vec();
            path.extend(
                rest.split("::")
                    .filter(|s| !s.is_empty() && *s != "*")
                    .map(|s| s.split("as").next().unwrap_or(s).to_owned()),
            );
            out.push(path);
        }
    }
    let mut out = Vec::new();
    go(&[], &tree, &mut out);
    out
}

/// Resolves `crate`/`super`/`self` against the file's module.
fn absolute(path: &[String], module: &[String], is_mod_rs: bool) -> Option<Vec<String>> {
    let mut segments = path.iter();
    let mut base: Vec<String> = match segments.next()?.as_str() {
        "crate" => Vec::new(),
        "self" => module.to_vec(),
        "super" => {
            let mut m = module.to_vec();
            // `super` in `a/b.rs` is `a`; in `a/b/mod.rs` (module a::b) it is `a` as well.
            let _ = is_mod_rs;
            m.pop()?;
            m
        }
        _ => return None,
    };
    for s in segments {
        if s == "super" {
            base.pop()?;
        } else if s != "self" {
            base.push(s.clone());
        }
    }
    Some(base)
}

/// The file defining the longest prefix of `path` that is a file.
fn resolve<'a>(path: &[String], by_module: &'a BTreeMap<Vec<String>, usize>) -> Option<&'a usize> {
    (0..=path.len())
        .rev()
        .find_map(|n| by_module.get(&path[..n]))
}

fn graph(files: &[File]) -> Vec<BTreeSet<usize>> {
    let by_module: BTreeMap<Vec<String>, usize> = files
        .iter()
        .enumerate()
        .map(|(i, f)| (f.module.clone(), i))
        .collect();
    files
        .iter()
        .enumerate()
        .map(|(i, f)| {
            let is_mod_rs = f.path.file_name().is_some_and(|n| n == "mod.rs");
            let children: BTreeSet<String> = files
                .iter()
                .filter(|c| c.module.len() == f.module.len() + 1 && c.module.starts_with(&f.module))
                .filter_map(|c| c.module.last().cloned())
                .collect();
            paths_in(&code_of(&f.text), &f.module, is_mod_rs, &children)
                .iter()
                .filter_map(|p| resolve(p, &by_module).copied())
                .filter(|&j| j != i)
                .collect()
        })
        .collect()
}

/// Strongly connected components of more than one file (Tarjan).
fn circles(edges: &[BTreeSet<usize>]) -> Vec<Vec<usize>> {
    struct T<'a> {
        edges: &'a [BTreeSet<usize>],
        index: Vec<Option<usize>>,
        low: Vec<usize>,
        on: Vec<bool>,
        stack: Vec<usize>,
        next: usize,
        out: Vec<Vec<usize>>,
    }
    fn visit(t: &mut T<'_>, v: usize) {
        t.index[v] = Some(t.next);
        t.low[v] = t.next;
        t.next += 1;
        t.stack.push(v);
        t.on[v] = true;
        for &w in t.edges[v].iter() {
            match t.index[w] {
                None => {
                    visit(t, w);
                    t.low[v] = t.low[v].min(t.low[w]);
                }
                Some(iw) if t.on[w] => t.low[v] = t.low[v].min(iw),
                Some(_) => {}
            }
        }
        if Some(t.low[v]) == t.index[v] {
            let mut comp = Vec::new();
            while let Some(w) = t.stack.pop() {
                t.on[w] = false;
                comp.push(w);
                if w == v {
                    break;
                }
            }
            if comp.len() > 1 {
                t.out.push(comp);
            }
        }
    }
    let n = edges.len();
    let mut t = T {
        edges,
        index: vec![None; n],
        low: vec![0; n],
        on: vec![false; n],
        stack: Vec::new(),
        next: 0,
        out: Vec::new(),
    };
    for v in 0..n {
        if t.index[v].is_none() {
            visit(&mut t, v);
        }
    }
    t.out
}

fn name(f: &File) -> String {
    f.path
        .strip_prefix(SRC)
        .unwrap_or(&f.path)
        .display()
        .to_string()
}

#[test]
fn no_import_circle_between_files() {
    let files = files();
    let edges = graph(&files);
    let found: Vec<String> = circles(&edges)
        .into_iter()
        .map(|comp| {
            let mut names: Vec<String> = comp.iter().map(|&i| name(&files[i])).collect();
            names.sort();
            names.join(" <-> ")
        })
        .collect();
    assert!(
        found.is_empty(),
        "import circles between files of src/:\n  {}",
        found.join("\n  ")
    );
}

#[test]
fn only_main_uses_startup() {
    let files = files();
    let edges = graph(&files);
    let Some(startup) = files.iter().position(|f| f.module == ["startup"]) else {
        return;
    };
    let users: Vec<String> = edges
        .iter()
        .enumerate()
        .filter(|(i, e)| {
            e.contains(&startup) && files[*i].module.first().map(String::as_str) != Some("startup")
        })
        .map(|(i, _)| name(&files[i]))
        .filter(|n| n != "main.rs" && n != "lib.rs")
        .collect();
    assert!(users.is_empty(), "startup is used by {users:?}");
}

#[test]
fn no_file_in_src_is_too_long() {
    let long: Vec<String> = files()
        .iter()
        .filter(|f| f.text.lines().count() > MAX_LINES)
        .map(|f| format!("{} ({} lines)", name(f), f.text.lines().count()))
        .collect();
    assert!(long.is_empty(), "files over {MAX_LINES} lines: {long:?}");
}

#[test]
fn the_checker_sees_a_circle() {
    let mk = |module: &[&str], text: &str| File {
        path: PathBuf::from(format!("{SRC}/{}.rs", module.join("/"))),
        module: module.iter().map(|s| s.to_string()).collect(),
        text: text.to_owned(),
    };
    let files = vec![
        mk(&["a"], "use crate::b::{Thing, other::{X as Y}};\n"),
        mk(&["b"], "fn f() { crate::a::g(); }\n"),
        mk(
            &["c"],
            "// crate::a in a comment\nconst S: &str = \"crate::a\";\n",
        ),
        mk(&["d"], "#[cfg(test)]\nmod tests { use crate::a::x; }\n"),
        mk(&["e"], "pub use f::Thing;\nfn g() { f::h(); x::f::y(); }\n"),
        mk(&["e", "f"], "use super::Other;\n"),
    ];
    let edges = graph(&files);
    assert!(edges[0].contains(&1) && edges[1].contains(&0));
    assert!(edges[2].is_empty(), "comments and strings are not imports");
    assert!(edges[3].is_empty(), "test modules are left out");
    assert!(
        edges[4].contains(&5),
        "a child module named by a relative path"
    );
    assert_eq!(circles(&edges).len(), 2);
}
