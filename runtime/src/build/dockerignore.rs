//! `.dockerignore`: which paths of a build context are left out of the build, with Docker's
//! semantics (moby's patternmatcher): one pattern a line, `#` comments, blank lines ignored,
//! each pattern cleaned like Go's `filepath.Clean` with leading `/` dropped; `*`, `?` and
//! `[...]` as in Go's `filepath.Match` (none crossing `/`), `**` matching any number of
//! directories, `!` exceptions, the last matching line winning, and a pattern that matches a
//! directory also matching everything below it.
//!
//! Note for the build step: Docker always sends the Dockerfile and the `.dockerignore` file
//! itself to the builder, even when a pattern here excludes them; the walk must add them back.
//!
//! Hand-written rather than through `glob`/`globset`: those follow shell or gitignore rules
//! (`**` without `/`, character class syntax, directory handling) that differ from Docker's in
//! small ways, and the matcher is short.

/// A parsed `.dockerignore`.
#[derive(Clone, Debug, Default)]
pub struct DockerIgnore {
    patterns: Vec<Pattern>,
}

/// Why a `.dockerignore` was rejected.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DockerIgnoreError {
    #[error(".dockerignore:{line}: invalid pattern {pattern:?}: {message}")]
    BadPattern {
        line: usize,
        pattern: String,
        message: String,
    },
}

impl DockerIgnore {
    /// Parses the text of a `.dockerignore` file.
    pub fn parse(text: &str) -> Result<Self, DockerIgnoreError> {
        let mut patterns = Vec::new();
        for (i, line) in text.lines().enumerate() {
            let line = if i == 0 {
                line.trim_start_matches('\u{feff}')
            } else {
                line
            };
            if line.starts_with('#') {
                continue;
            }
            let mut pattern = line.trim();
            if pattern.is_empty() {
                continue;
            }
            let bad = |message: &str| DockerIgnoreError::BadPattern {
                line: i + 1,
                pattern: line.to_owned(),
                message: message.to_owned(),
            };
            let exclusion = pattern.starts_with('!');
            if exclusion {
                pattern = pattern[1..].trim();
                if pattern.is_empty() {
                    return Err(bad("an exception needs a pattern after the !"));
                }
            }
            // Matching recurses once per pattern element; no real pattern comes near this.
            if pattern.len() > MAX_PATTERN_LEN {
                return Err(bad("pattern is longer than 4096 bytes"));
            }
            let cleaned = clean(pattern);
            let tokens = compile(&cleaned).map_err(bad)?;
            patterns.push(Pattern {
                text: cleaned,
                exclusion,
                tokens,
            });
        }
        Ok(DockerIgnore { patterns })
    }

    /// Whether `path` (relative to the context, `/`-separated) is excluded from the context.
    pub fn matches(&self, path: &str) -> bool {
        let path = clean(path);
        let parents: Vec<&str> = path.match_indices('/').map(|(at, _)| &path[..at]).collect();
        let mut excluded = false;
        for pattern in &self.patterns {
            // Last match wins, so only a pattern that would change the answer needs checking.
            if pattern.exclusion != excluded {
                continue;
            }
            if pattern.matches(&path) || parents.iter().any(|p| pattern.matches(p)) {
                excluded = !pattern.exclusion;
            }
        }
        excluded
    }

    /// Whether a walk of the context may skip directory `dir` entirely: true only when `dir` is
    /// excluded and no exception could re-include it or anything inside it.
    pub fn may_skip_dir(&self, dir: &str) -> bool {
        if !self.matches(dir) {
            return false;
        }
        let dir = clean(dir);
        let dir_segments: Vec<&str> = dir.split('/').collect();
        !self
            .patterns
            .iter()
            .filter(|p| p.exclusion)
            .any(|p| p.could_match_within(&dir_segments))
    }

    /// Whether any line is an `!` exception.
    pub fn has_exceptions(&self) -> bool {
        self.patterns.iter().any(|p| p.exclusion)
    }
}

const MAX_PATTERN_LEN: usize = 4096;

#[derive(Clone, Debug)]
struct Pattern {
    text: String,
    exclusion: bool,
    tokens: Vec<Token>,
}

#[derive(Clone, Debug, PartialEq)]
enum Token {
    Literal(char),
    /// `*`: any run of characters but `/`.
    Star,
    /// `?`: one character but `/`.
    One,
    Class {
        negated: bool,
        ranges: Vec<(char, char)>,
    },
    /// `**/` before more pattern: any number of whole directories, including none.
    Dirs,
    /// `**` at the end: anything.
    Rest,
}

impl Pattern {
    fn matches(&self, path: &str) -> bool {
        let chars: Vec<char> = path.chars().collect();
        let mut memo = vec![None; (self.tokens.len() + 1) * (chars.len() + 1)];
        match_at(&self.tokens, &chars, 0, 0, &mut memo)
    }

    /// Whether this pattern could match `dir` itself, an ancestor of it, or a path inside it,
    /// compared segment by segment; `**` is assumed to match.
    fn could_match_within(&self, dir: &[&str]) -> bool {
        let segments: Vec<&str> = self.text.split('/').collect();
        for (i, d) in dir.iter().enumerate() {
            let Some(segment) = segments.get(i) else {
                return true;
            };
            if segment.contains("**") {
                return true;
            }
            let single = match compile(segment) {
                Ok(tokens) => Pattern {
                    text: (*segment).to_owned(),
                    exclusion: false,
                    tokens,
                },
                Err(_) => return true,
            };
            if !single.matches(d) {
                return false;
            }
        }
        true
    }
}

/// Go's `filepath.Clean` on a `/`-separated path, then without a leading `/`.
fn clean(path: &str) -> String {
    let mut out: Vec<&str> = Vec::new();
    let rooted = path.starts_with('/');
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                if out.last().is_some_and(|l| *l != "..") {
                    out.pop();
                } else if !rooted {
                    out.push("..");
                }
            }
            p => out.push(p),
        }
    }
    if out.is_empty() {
        ".".to_owned()
    } else {
        out.join("/")
    }
}

fn compile(pattern: &str) -> Result<Vec<Token>, &'static str> {
    let chars: Vec<char> = pattern.chars().collect();
    let mut tokens = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        i += 1;
        match c {
            '*' if chars.get(i) == Some(&'*') => {
                i += 1;
                if chars.get(i) == Some(&'/') {
                    i += 1;
                }
                tokens.push(if i == chars.len() {
                    Token::Rest
                } else {
                    Token::Dirs
                });
            }
            '*' => tokens.push(Token::Star),
            '?' => tokens.push(Token::One),
            '\\' => {
                let n = chars.get(i).ok_or("a trailing \\ escapes nothing")?;
                i += 1;
                tokens.push(Token::Literal(*n));
            }
            '[' => {
                let mut negated = false;
                if chars.get(i) == Some(&'^') {
                    negated = true;
                    i += 1;
                }
                let mut ranges = Vec::new();
                loop {
                    match chars.get(i) {
                        None => return Err("unclosed character class: add ]"),
                        Some(']') if !ranges.is_empty() => {
                            i += 1;
                            break;
                        }
                        _ => {}
                    }
                    let lo = class_char(&chars, &mut i)?;
                    let hi = if chars.get(i) == Some(&'-') {
                        i += 1;
                        class_char(&chars, &mut i)?
                    } else {
                        lo
                    };
                    ranges.push((lo, hi));
                }
                tokens.push(Token::Class { negated, ranges });
            }
            c => tokens.push(Token::Literal(c)),
        }
    }
    Ok(tokens)
}

/// One character of a class, as Go's `getEsc`: `-` and `]` must be escaped.
fn class_char(chars: &[char], i: &mut usize) -> Result<char, &'static str> {
    let c = *chars.get(*i).ok_or("unclosed character class: add ]")?;
    if c == '-' || c == ']' {
        return Err("character class needs a character before - or ]: escape it with \\");
    }
    *i += 1;
    if c == '\\' {
        let n = *chars.get(*i).ok_or("unclosed character class: add ]")?;
        *i += 1;
        return Ok(n);
    }
    Ok(c)
}

/// Whether `tokens[t..]` matches `chars[p..]`, memoised so `*` and `**` stay polynomial.
fn match_at(
    tokens: &[Token],
    chars: &[char],
    t: usize,
    p: usize,
    memo: &mut [Option<bool>],
) -> bool {
    let key = t * (chars.len() + 1) + p;
    if let Some(known) = memo[key] {
        return known;
    }
    let result = match tokens.get(t) {
        None => p == chars.len(),
        Some(Token::Literal(c)) => {
            chars.get(p) == Some(c) && match_at(tokens, chars, t + 1, p + 1, memo)
        }
        Some(Token::One) => {
            chars.get(p).is_some_and(|c| *c != '/') && match_at(tokens, chars, t + 1, p + 1, memo)
        }
        Some(Token::Class { negated, ranges }) => {
            chars
                .get(p)
                .is_some_and(|c| ranges.iter().any(|(lo, hi)| lo <= c && c <= hi) != *negated)
                && match_at(tokens, chars, t + 1, p + 1, memo)
        }
        Some(Token::Star) => {
            let mut end = p;
            loop {
                if match_at(tokens, chars, t + 1, end, memo) {
                    break true;
                }
                if end == chars.len() || chars[end] == '/' {
                    break false;
                }
                end += 1;
            }
        }
        Some(Token::Rest) => true,
        Some(Token::Dirs) => {
            match_at(tokens, chars, t + 1, p, memo)
                || (p..chars.len())
                    .any(|k| chars[k] == '/' && match_at(tokens, chars, t + 1, k + 1, memo))
        }
    };
    memo[key] = Some(result);
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clean_like_go() {
        for (input, expected) in [
            ("/a/b/", "a/b"),
            ("./a//b", "a/b"),
            ("a/../b", "b"),
            ("../a", "../a"),
            ("/../a", "a"),
            ("", "."),
            ("/", "."),
        ] {
            assert_eq!(clean(input), expected, "{input:?}");
        }
    }

    #[test]
    fn classes() {
        let p = |s: &str| Pattern {
            text: s.to_owned(),
            exclusion: false,
            tokens: compile(s).unwrap(),
        };
        assert!(p("[a-c]x").matches("bx"));
        assert!(!p("[a-c]x").matches("dx"));
        assert!(p("[^a-c]x").matches("dx"));
        assert!(p("\\*").matches("*"));
        assert!(!p("\\*").matches("a"));
        assert!(compile("[a").is_err());
        assert!(compile("[]").is_err());
        assert!(compile("a\\").is_err());
    }
}
