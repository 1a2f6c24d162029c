//! POSIX shell quoting.
//!
//! Every remote command is a string that a POSIX shell on the host parses, so any value spliced into it (a path, a
//! node name, a version) must be quoted or it could change the command. Single quotes are the only POSIX quoting
//! with no special characters inside, so the one rule needed is: wrap in `'…'` and write each embedded `'` as
//! `'\''`. Secrets are never quoted into commands at all; they go through stdin.

/// Quotes one word for a POSIX shell: the result, parsed by `sh`, is exactly `s` as a single argument.
///
/// Words made only of "safe" characters are returned unchanged so that logged commands stay readable.
pub fn quote(s: &str) -> String {
    let safe = !s.is_empty()
        && s.bytes().all(|b| {
            b.is_ascii_alphanumeric()
                || matches!(
                    b,
                    b'-' | b'_' | b'.' | b'/' | b'=' | b':' | b',' | b'+' | b'@' | b'%'
                )
        });
    if safe {
        return s.to_owned();
    }
    let mut out = String::with_capacity(s.len() + 2);
    out.push('\'');
    for c in s.chars() {
        if c == '\'' {
            out.push_str("'\\''");
        } else {
            out.push(c);
        }
    }
    out.push('\'');
    out
}

/// Quotes each word and joins them with spaces: a command line whose argv is exactly `words`.
pub fn join<I, S>(words: I) -> String
where
    I: IntoIterator<Item = S>,
    S: AsRef<str>,
{
    words
        .into_iter()
        .map(|w| quote(w.as_ref()))
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn plain_words_stay_readable() {
        assert_eq!(quote("abc"), "abc");
        assert_eq!(
            quote("/etc/rancher/k3s/config.yaml"),
            "/etc/rancher/k3s/config.yaml"
        );
        assert_eq!(quote("v1.31.4+k3s1"), "v1.31.4+k3s1");
    }

    #[test]
    fn special_words_are_single_quoted() {
        assert_eq!(quote(""), "''");
        assert_eq!(quote("a b"), "'a b'");
        assert_eq!(quote("it's"), "'it'\\''s'");
        assert_eq!(quote("$(reboot)"), "'$(reboot)'");
        assert_eq!(quote("a\nb"), "'a\nb'");
        assert_eq!(join(["printf", "%s", "x y"]), "printf %s 'x y'");
    }

    fn sh_printf(word: &str) -> Vec<u8> {
        let script = format!("printf %s {}", quote(word));
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(&script)
            .output()
            .expect("run sh");
        assert!(out.status.success(), "sh failed for {script:?}");
        out.stdout
    }

    #[test]
    fn tricky_words_round_trip_through_sh() {
        for w in [
            "",
            "'",
            "''",
            "\\",
            "\"",
            "$HOME",
            "`id`",
            "a'b\"c$d`e\\f",
            " lead",
            "trail ",
            "*",
            "~",
            "#x",
            "-n",
            "%s%%",
            "é ü 漢",
        ] {
            assert_eq!(sh_printf(w), w.as_bytes(), "word {w:?}");
        }
    }

    proptest! {
        // Each case spawns a shell, so keep the count modest.
        #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]
        #[test]
        fn quoted_strings_round_trip_through_sh(word in "[^\u{0}]{0,40}") {
            prop_assert_eq!(sh_printf(&word), word.as_bytes().to_vec());
        }
    }
}
