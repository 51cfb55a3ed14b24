//! Credentials never shown: a NATS or S3 URL's `user:password@` (or `token@`) is replaced
//! before a URL or a message that may quote one is logged, printed or put in an error.

/// What stands for a removed credential.
pub const MASK: &str = "***";

/// `text` with the userinfo of every `scheme://userinfo@host` in it masked: the user name
/// stays (`nats://ci:***@host`), a password or token goes. Text without `://` is returned as is.
pub fn credentials(text: &str) -> String {
    if !text.contains("://") {
        return text.to_owned();
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find("://") {
        let (head, tail) = rest.split_at(at + 3);
        out.push_str(head);
        // The authority ends at the path, the next URL of a list, or the end of the word.
        let end = tail
            .find(|c: char| {
                matches!(
                    c,
                    '/' | '?' | '#' | ',' | '"' | '\'' | '>' | ')' | ']' | '}'
                ) || c.is_whitespace()
            })
            .unwrap_or(tail.len());
        let authority = &tail[..end];
        match authority.rfind('@') {
            Some(at) => {
                if let Some((user, _)) = authority[..at].split_once(':') {
                    out.push_str(user);
                    out.push(':');
                }
                out.push_str(MASK);
                out.push_str(&authority[at..]);
            }
            None => out.push_str(authority),
        }
        rest = &tail[end..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::credentials;

    #[test]
    fn userinfo_is_masked_everywhere_in_a_text() {
        assert_eq!(
            credentials("nats://ci:s3cret@h:4222"),
            "nats://ci:***@h:4222"
        );
        assert_eq!(credentials("tls://tok3n@h"), "tls://***@h");
        assert_eq!(
            credentials("nats://a:p1@x:1,nats://b:p2@y:2"),
            "nats://a:***@x:1,nats://b:***@y:2"
        );
        assert_eq!(
            credentials(
                "cannot connect to the NATS server at nats://u:p:w@h:1: refused (\"nats://u:q@h\")"
            ),
            "cannot connect to the NATS server at nats://u:***@h:1: refused (\"nats://u:***@h\")"
        );
        assert_eq!(
            credentials("https://k:s@s3.example/bucket/a@b"),
            "https://k:***@s3.example/bucket/a@b"
        );
        for plain in ["nats://h:4222", "no url here", "a@b", "nats://"] {
            assert_eq!(credentials(plain), plain);
        }
    }
}
