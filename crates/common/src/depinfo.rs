//! Dep files (`.d`), make rules listing what a compile read: rustc's dep-info (sources and
//! env vars, [`DepInfo`]) and a C compiler's `-MD` file ([`make_rule_inputs`]). One rule
//! reader serves both; they differ only in how paths are escaped (rustc escapes spaces,
//! gcc and clang quote as make does: `\ `, `\#`, `$$`).

/// What a dep-info file says the compile read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DepInfo {
    /// Source paths exactly as written (relative to the cwd, or absolute), de-duplicated,
    /// in order of first appearance.
    pub sources: Vec<String>,
    /// `# env-dep:NAME[=VALUE]` lines. Values stay in rustc's escaped form (`\n`, `\\`), and
    /// are compared against [`escape_env_value`] of the current value.
    pub env_deps: Vec<(String, Option<String>)>,
}

impl DepInfo {
    /// Parses a dep-info file. rustc writes one rule per output, each listing every source,
    /// then an empty rule per source, then the env-dep comments.
    pub fn parse(text: &str) -> DepInfo {
        let mut info = DepInfo::default();
        let mut seen = std::collections::HashSet::new();
        for line in text.lines() {
            if let Some(dep) = line.strip_prefix("# env-dep:") {
                let (name, value) = match dep.split_once('=') {
                    Some((n, v)) => (n.to_owned(), Some(v.to_owned())),
                    None => (dep.to_owned(), None),
                };
                info.env_deps.push((name, value));
                continue;
            }
            if line.starts_with('#') || line.trim().is_empty() {
                continue;
            }
            let Some((_target, deps)) = split_rule(line) else {
                continue;
            };
            for dep in split_paths(deps, Quoting::Rustc) {
                if seen.insert(dep.clone()) {
                    info.sources.push(dep);
                }
            }
        }
        info.env_deps.sort();
        info.env_deps.dedup();
        info
    }
}

/// rustc's escaping of env-dep values in dep-info.
pub fn escape_env_value(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\\' => out.push_str("\\\\"),
            c => out.push(c),
        }
    }
    out
}

/// A path as make's rules quote it (what gcc writes for a dep file's target): `$` doubled,
/// spaces, tabs and `#` escaped.
pub fn make_quote(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    for c in path.chars() {
        match c {
            '$' => out.push_str("$$"),
            ' ' | '\t' | '#' => {
                out.push('\\');
                out.push(c);
            }
            _ => out.push(c),
        }
    }
    out
}

/// The prerequisites of a C compiler's dep file's first rule (the source and its headers),
/// unquoted; `-MP`'s phony rules after it are ignored. `None` if it holds no rule.
pub fn make_rule_inputs(text: &str) -> Option<Vec<String>> {
    // The first logical line: continuations joined.
    let mut line = String::new();
    for l in text.lines() {
        if let Some(rest) = l.strip_suffix('\\') {
            line.push_str(rest);
            line.push(' ');
        } else {
            line.push_str(l);
            break;
        }
    }
    let (_target, deps) = split_rule(&line)?;
    Some(split_paths(deps, Quoting::Make))
}

/// How a dep file's paths are escaped.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Quoting {
    /// rustc: `\ ` only.
    Rustc,
    /// make (gcc, clang): `\ `, `\<tab>`, `\#` and `$$`.
    Make,
}

/// Splits `target: deps` at the first unescaped `:` followed by whitespace or the end
/// (paths may hold `\ ` and `:`).
fn split_rule(line: &str) -> Option<(&str, &str)> {
    let bytes = line.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' => i += 2,
            b':' if i + 1 == bytes.len() || matches!(bytes[i + 1], b' ' | b'\t') => {
                return Some((&line[..i], &line[i + 1..]));
            }
            _ => i += 1,
        }
    }
    None
}

/// Splits a whitespace-separated dependency list, undoing its escapes.
fn split_paths(deps: &str, quoting: Quoting) -> Vec<String> {
    let make = quoting == Quoting::Make;
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut chars = deps.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' if chars.peek() == Some(&' ')
                || make && matches!(chars.peek(), Some('\t' | '#')) =>
            {
                cur.push(chars.next().expect("peeked"));
            }
            '$' if make && chars.peek() == Some(&'$') => {
                chars.next();
                cur.push('$');
            }
            ' ' | '\t' => {
                if !cur.is_empty() {
                    out.push(std::mem::take(&mut cur));
                }
            }
            c => cur.push(c),
        }
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "/t/deps/app-1.d: src/lib.rs src/with\\ space.rs /reg/gen/out/x.rs\n\n\
/t/deps/libapp-1.rmeta: src/lib.rs src/with\\ space.rs /reg/gen/out/x.rs\n\n\
src/lib.rs:\nsrc/with\\ space.rs:\n/reg/gen/out/x.rs:\n\n\
# env-dep:STAMP=v1\n# env-dep:UNSET\n# env-dep:CARGO_PKG_NAME=app\n";

    #[test]
    fn parses_sources_and_env_deps() {
        let info = DepInfo::parse(SAMPLE);
        assert_eq!(
            info.sources,
            vec!["src/lib.rs", "src/with space.rs", "/reg/gen/out/x.rs"]
        );
        assert_eq!(
            info.env_deps,
            vec![
                ("CARGO_PKG_NAME".into(), Some("app".into())),
                ("STAMP".into(), Some("v1".into())),
                ("UNSET".into(), None),
            ]
        );
    }

    #[test]
    fn c_dep_files_are_read_as_make_reads_them() {
        let text = "obj/a\\ b.o: src/a\\ b.c /usr/include/stdio.h \\\n inc/x$$y.h\n\ninc/x$$y.h:\n";
        assert_eq!(
            make_rule_inputs(text).unwrap(),
            ["src/a b.c", "/usr/include/stdio.h", "inc/x$y.h"]
        );
        assert_eq!(make_quote("a b$#.o"), "a\\ b$$\\#.o");
        assert_eq!(make_rule_inputs("garbage"), None);
    }

    #[test]
    fn escapes_like_rustc() {
        assert_eq!(escape_env_value("a\nb\\c"), "a\\nb\\\\c");
    }
}
