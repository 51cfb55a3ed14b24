//! The libraries a link reads, from rustc's `--print link-args=FILE`.
//!
//! A link pulls in every rlib of the crate graph, not only the direct `--extern`s, and which
//! ones rustc picks from the `-L dependency=` dirs is only known after it ran. jetcc asks rustc
//! to print the linker command on every link it compiles and keys the libraries named there
//! like source files (direct mode), so a changed transitive dependency, even one whose crate
//! hash did not change (a bundled native library), makes the link miss.

/// Library files (`.rlib`, `.a`, `.so`) named in a printed linker command, except the Rust
/// sysroot's (covered by the compiler identity) and the output (`-o`, a `.so` for dylibs and
/// proc-macros). Object files are rustc's own temporaries.
pub fn library_inputs(printed: &str) -> Vec<String> {
    let words = quoted_words(printed);
    let output = words
        .iter()
        .position(|w| w == "-o")
        .and_then(|i| words.get(i + 1))
        .cloned();
    let mut out: Vec<String> = words
        .into_iter()
        .filter(|w| w.starts_with('/') && Some(w) != output.as_ref())
        .filter(|w| w.ends_with(".rlib") || w.ends_with(".a") || w.ends_with(".so"))
        .filter(|w| !w.contains("/lib/rustlib/"))
        .collect();
    out.sort();
    out.dedup();
    out
}

/// The `"…"`-quoted words of rustc's printed command (it quotes every argument).
fn quoted_words(text: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c != '"' {
            continue;
        }
        let mut w = String::new();
        while let Some(c) = chars.next() {
            match c {
                '\\' => {
                    if let Some(n) = chars.next() {
                        w.push(n);
                    }
                }
                '"' => break,
                c => w.push(c),
            }
        }
        words.push(w);
    }
    words
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_crate_and_native_libraries_only() {
        let printed = r#"LC_ALL="C" PATH="/x/bin:/usr/bin" VSLANG="1033" "cc" "-m64" "/t/deps/rustcX/symbols.o" "/t/deps/app-1.app.cgu.0.rcgu.o" "-Wl,--as-needed" "/t/deps/libcorelib-2.rlib" "/t/deps/libleaf-3.rlib" "/t/build/util-4/out/libfixnative.a" "/root/.rustup/toolchains/s/lib/rustlib/x86_64-unknown-linux-gnu/lib/libstd-5.rlib" "-lgcc_s" "-L" "/t/deps" "-o" "/t/deps/libapp-1.so""#;
        assert_eq!(
            library_inputs(printed),
            vec![
                "/t/build/util-4/out/libfixnative.a",
                "/t/deps/libcorelib-2.rlib",
                "/t/deps/libleaf-3.rlib",
            ]
        );
    }
}
