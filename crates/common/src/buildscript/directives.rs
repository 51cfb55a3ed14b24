//! What a build script told cargo on stdout: the `cargo:`/`cargo::` directives jetcc needs to
//! key the script's next run (`rerun-if-changed`, `rerun-if-env-changed`), to find the
//! system libraries it pointed rustc at (`rustc-link-search`, `rustc-link-lib`) and the
//! variables it set for rustc (`rustc-env`, which a farm job guessed without a pre-pass
//! carries).

/// The directives of one run, in the order printed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Directives {
    /// `rerun-if-changed` paths, as printed (relative to the package dir, or absolute).
    pub rerun_if_changed: Vec<String>,
    /// `rerun-if-env-changed` variable names.
    pub rerun_if_env_changed: Vec<String>,
    /// `rustc-link-search` dirs (the `KIND=` prefix removed).
    pub link_search: Vec<String>,
    /// `rustc-link-lib` names (kind and modifiers removed, `:rename` dropped).
    pub link_lib: Vec<String>,
    /// `rustc-env` variable names.
    pub rustc_env: Vec<String>,
}

impl Directives {
    /// Reads the directives from a script's stdout. Other lines (and other directives) are
    /// cargo's business; only the forms cargo accepts are read, so jetcc and cargo agree.
    pub fn parse(stdout: &[u8]) -> Directives {
        let mut d = Directives::default();
        for line in String::from_utf8_lossy(stdout).lines() {
            let Some(rest) = line
                .strip_prefix("cargo::")
                .or_else(|| line.strip_prefix("cargo:"))
            else {
                continue;
            };
            let Some((key, value)) = rest.split_once('=') else {
                continue;
            };
            let value = value.trim_end_matches('\r');
            match key {
                "rerun-if-changed" => d.rerun_if_changed.push(value.to_owned()),
                "rerun-if-env-changed" => d.rerun_if_env_changed.push(value.to_owned()),
                "rustc-link-search" => {
                    let dir = match value.split_once('=') {
                        Some((kind, dir)) if is_search_kind(kind) => dir,
                        _ => value,
                    };
                    d.link_search.push(dir.to_owned());
                }
                "rustc-link-lib" => d.link_lib.push(lib_name(value).to_owned()),
                "rustc-env" => {
                    if let Some((name, _)) = value.split_once('=') {
                        d.rustc_env.push(name.to_owned());
                    }
                }
                _ => {}
            }
        }
        d
    }
}

fn is_search_kind(kind: &str) -> bool {
    matches!(
        kind,
        "native" | "dependency" | "crate" | "framework" | "all"
    )
}

/// `static:+whole-archive=foo:bar` → `foo`.
fn lib_name(value: &str) -> &str {
    let name = value.split_once('=').map_or(value, |(_, n)| n);
    name.split_once(':').map_or(name, |(n, _)| n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_both_syntaxes_and_strips_kinds() {
        let out = b"cargo:rerun-if-changed=csrc\n\
            cargo::rerun-if-env-changed=MODE\n\
            cargo:rustc-link-search=native=/usr/lib/x86_64-linux-gnu\n\
            cargo:rustc-link-search=/opt/lib\n\
            cargo:rustc-link-lib=static:+whole-archive=add\n\
            cargo::rustc-link-lib=z\n\
            cargo:rustc-env=STAMP=a=b\n\
            cargo::rustc-env=MODE=fast\n\
            cargo:warning=hello=world\n\
            not a directive=1\n\
            cargo:rustc-cfg=foo\r\n";
        let d = Directives::parse(out);
        assert_eq!(d.rerun_if_changed, ["csrc"]);
        assert_eq!(d.rerun_if_env_changed, ["MODE"]);
        assert_eq!(d.link_search, ["/usr/lib/x86_64-linux-gnu", "/opt/lib"]);
        assert_eq!(d.link_lib, ["add", "z"]);
        assert_eq!(d.rustc_env, ["STAMP", "MODE"]);
    }
}
