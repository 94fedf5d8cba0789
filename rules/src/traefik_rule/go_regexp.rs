//! Go regular expressions, as Traefik compiles them (`regexp.Compile`, RE2 syntax with Perl
//! extensions), checked the way Go checks them and rewritten as a Rust `regex` pattern that gives
//! the same answers.
//!
//! The two syntaxes are close but not the same, and a pattern copied across unchanged would
//! silently match other requests. What differs, and what this module does about it:
//!
//! | Go                                                   | Rust `regex`                  | here                                  |
//! |------------------------------------------------------|-------------------------------|---------------------------------------|
//! | `{` that does not start `{n}`, `{n,}`, `{n,m}` is a literal (`/{path:css}`) | an error | emitted as `\{`                |
//! | `\d`, `\s`, `\w`, `[[:word:]]` are ASCII-only         | Unicode-aware                 | emitted as explicit ASCII sets        |
//! | `\b`, `\B` are ASCII word boundaries                  | Unicode word boundaries       | emitted as `(?-u:\b)`, `(?-u:\B)`     |
//! | octal escapes `\0`, `\012`                            | not accepted                  | emitted as `\x{..}`                   |
//! | `a**`, `x{1001}`, nested counts over 1000 are errors  | accepted                      | rejected, as Go does                  |
//! | `(?ii)`, `(?)`, flag `U` swaps greediness             | stricter flag syntax          | flags resolved per atom, re-emitted as `(?i-ms)`; greediness written out |
//! | a repetition after a flag group repeats the atom before it (`a(?i)*`) | an error      | emitted as `a*`                        |
//! | duplicate or digit-leading group names are accepted  | rejected                      | such groups are emitted unnamed       |
//! | `\pN`, `\p{Greek}` (Go 1.25+ also loose spellings)    | loose spellings               | the exact spellings of general categories and one-word scripts are accepted; other names, `\pC` (Go and Rust disagree on unassigned code points) and `\p{Cs}` are rejected |
//! | `\x{D800}` (a surrogate) is a literal that never matches | an error                   | emitted as a class that never matches |
//!
//! The emitted pattern only uses syntax both engines read the same way (except the ASCII word
//! boundaries, which [`to_go_syntax`] turns back into `\b`), so translating an emitted pattern
//! again gives it back unchanged. Limits that remain: Rust's default compiled-size limit and
//! nesting limit (250) are lower than Go's, so a very large pattern (`\pL{1000}`) that Go accepts
//! is rejected when the route is compiled; and the two engines' Unicode tables may be of different
//! Unicode versions.
//!
//! Not for: matching (the proxy compiles the emitted pattern) or templates (`template.rs`).

use std::collections::HashSet;
use std::fmt::Write as _;

/// Go's limit on a single repetition count and on the product of nested counts.
const MAX_REPEAT: u32 = 1000;
/// Go rejects parse trees deeper than 1000; Rust's default nesting limit is 250, so anything deeper
/// than this could not be compiled by the proxy anyway, and the recursion here stays shallow.
const MAX_NESTING: usize = 300;

/// Why a Go regular expression does not compile: Go's own words, and the part of the pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct GoRegexError {
    /// Byte offset in the pattern where the problem starts.
    pub(crate) offset: usize,
    pub(crate) message: String,
}

impl GoRegexError {
    fn new(offset: usize, message: impl Into<String>) -> Self {
        GoRegexError {
            offset,
            message: message.into(),
        }
    }
}

/// A parsed Go pattern, ready to be written out in Rust syntax.
#[derive(Debug, Clone)]
pub(crate) struct GoRegex {
    body: Vec<Vec<Node>>,
}

impl GoRegex {
    /// The equivalent Rust `regex` pattern.
    pub(crate) fn to_rust(&self) -> String {
        let mut emitter = Emitter::default();
        emitter.alternation(&self.body);
        emitter.out
    }

    /// Whether the pattern asserts the beginning of the text or of a line anywhere (`^`, `\A`).
    pub(crate) fn has_begin_assertion(&self) -> bool {
        fn walk(node: &Node) -> bool {
            match node {
                Node::Assert(Assertion::BeginLine | Assertion::BeginText) => true,
                Node::Group { body, .. } => body.iter().flatten().any(walk),
                Node::Repeat { sub, .. } => walk(sub),
                _ => false,
            }
        }
        self.body.iter().flatten().any(walk)
    }
}

/// Parses `pattern` as Go's `regexp.Compile` does, rejecting what Go rejects.
pub(crate) fn parse(pattern: &str) -> Result<GoRegex, GoRegexError> {
    Parser::new(pattern).run()
}

/// Translates a Go pattern to the equivalent Rust pattern.
pub(crate) fn translate(pattern: &str) -> Result<String, GoRegexError> {
    parse(pattern).map(|re| re.to_rust())
}

/// Writes a Rust pattern produced by [`translate`] back in Go syntax, for showing a route as a
/// rule. Only the ASCII word boundaries differ; a pattern from elsewhere passes through as it is.
pub(crate) fn to_go_syntax(rust: &str) -> String {
    const WORD: &str = "(?-u:\\b)";
    const NOT_WORD: &str = "(?-u:\\B)";
    let mut out = String::with_capacity(rust.len());
    let mut rest = rust;
    while let Some(c) = rest.chars().next() {
        if rest.starts_with(WORD) {
            out.push_str("\\b");
            rest = &rest[WORD.len()..];
        } else if rest.starts_with(NOT_WORD) {
            out.push_str("\\B");
            rest = &rest[NOT_WORD.len()..];
        } else if c == '\\' {
            // Copy an escape and the character it escapes as one unit.
            let mut chars = rest.char_indices();
            chars.next();
            let end = chars.next().map_or(rest.len(), |(i, c)| i + c.len_utf8());
            out.push_str(&rest[..end]);
            rest = &rest[end..];
        } else {
            out.push(c);
            rest = &rest[c.len_utf8()..];
        }
    }
    out
}

/// Go's `regexp.QuoteMeta`: escapes the characters that are special in a pattern.
pub(crate) fn quote_meta(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if "\\.+*?()|[]{}^$".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

// ----------------------------------------------------------------------------------------------
// Parse tree

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
struct Flags {
    /// `i`: case-insensitive.
    fold: bool,
    /// `m`: `^` and `$` match at line boundaries (Go's `OneLine` cleared).
    multi_line: bool,
    /// `s`: `.` matches `\n`.
    dot_nl: bool,
    /// `U`: repetitions are lazy unless followed by `?`.
    ungreedy: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Assertion {
    BeginLine,
    EndLine,
    BeginText,
    EndText,
    WordBoundary,
    NotWordBoundary,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RepeatOp {
    Star,
    Plus,
    Quest,
    Counted { min: u32, max: Option<u32> },
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Capture {
    No,
    Unnamed,
    Named(String),
}

#[derive(Debug, Clone)]
enum Node {
    /// One code point (possibly a surrogate, which never matches text).
    Literal {
        c: u32,
        fold: bool,
    },
    /// A class, already written out in the common syntax.
    Class {
        text: String,
        fold: bool,
    },
    Dot {
        dot_nl: bool,
    },
    Assert(Assertion),
    Group {
        capture: Capture,
        body: Vec<Vec<Node>>,
        height: usize,
    },
    Repeat {
        sub: Box<Node>,
        op: RepeatOp,
        greedy: bool,
        height: usize,
    },
}

impl Node {
    /// Levels of groups and repetitions, this node included.
    fn height(&self) -> usize {
        match self {
            Node::Group { height, .. } | Node::Repeat { height, .. } => *height,
            _ => 0,
        }
    }
}

/// One open group while parsing.
struct Frame {
    /// Where the group opened, for "missing closing )".
    offset: usize,
    capture: Capture,
    /// Flags to restore when the group closes.
    outer_flags: Flags,
    alternatives: Vec<Vec<Node>>,
    current: Vec<Node>,
}

struct Parser<'a> {
    pattern: &'a str,
    pos: usize,
    flags: Flags,
    frames: Vec<Frame>,
}

impl<'a> Parser<'a> {
    fn new(pattern: &'a str) -> Self {
        // Traefik compiles with Go's Perl flags: ^ and $ match at the ends of the text only.
        let top = Frame {
            offset: 0,
            capture: Capture::No,
            outer_flags: Flags::default(),
            alternatives: Vec::new(),
            current: Vec::new(),
        };
        Parser {
            pattern,
            pos: 0,
            flags: Flags::default(),
            frames: vec![top],
        }
    }

    fn rest(&self) -> &'a str {
        &self.pattern[self.pos..]
    }

    fn peek(&self) -> Option<char> {
        self.rest().chars().next()
    }

    fn bump(&mut self) -> Option<char> {
        let c = self.peek()?;
        self.pos += c.len_utf8();
        Some(c)
    }

    fn frame(&mut self) -> &mut Frame {
        // The top-level frame is never popped, so there is always one.
        let last = self.frames.len() - 1;
        &mut self.frames[last]
    }

    fn push(&mut self, node: Node) {
        self.frame().current.push(node);
    }

    fn run(mut self) -> Result<GoRegex, GoRegexError> {
        let mut last_was_repeat = false;
        while let Some(c) = self.peek() {
            let start = self.pos;
            let mut is_repeat = false;
            match c {
                '(' => {
                    if self.rest().starts_with("(?") {
                        self.perl_flags()?;
                    } else {
                        self.pos += 1;
                        self.open_group(start, Capture::Unnamed)?;
                    }
                }
                '|' => {
                    self.pos += 1;
                    let frame = self.frame();
                    let branch = std::mem::take(&mut frame.current);
                    frame.alternatives.push(branch);
                }
                ')' => {
                    self.pos += 1;
                    self.close_group(start)?;
                }
                '^' => {
                    self.pos += 1;
                    let a = if self.flags.multi_line {
                        Assertion::BeginLine
                    } else {
                        Assertion::BeginText
                    };
                    self.push(Node::Assert(a));
                }
                '$' => {
                    self.pos += 1;
                    let a = if self.flags.multi_line {
                        Assertion::EndLine
                    } else {
                        Assertion::EndText
                    };
                    self.push(Node::Assert(a));
                }
                '.' => {
                    self.pos += 1;
                    let dot_nl = self.flags.dot_nl;
                    self.push(Node::Dot { dot_nl });
                }
                '[' => {
                    let node = self.class()?;
                    self.push(node);
                }
                '*' | '+' | '?' => {
                    self.pos += 1;
                    let op = match c {
                        '*' => RepeatOp::Star,
                        '+' => RepeatOp::Plus,
                        _ => RepeatOp::Quest,
                    };
                    self.repeat(start, op, last_was_repeat)?;
                    is_repeat = true;
                }
                '{' => match parse_repeat(self.rest()) {
                    None => {
                        // Not a well-formed count: a literal brace.
                        self.pos += 1;
                        let fold = self.flags.fold;
                        self.push(Node::Literal { c: '{' as u32, fold });
                    }
                    Some((min, max, len)) => {
                        let too_big = match (min, &max) {
                            (None, _) | (_, Some(Bound::At(None))) => true,
                            (Some(min), None | Some(Bound::Unbounded)) => min > MAX_REPEAT,
                            (Some(min), Some(Bound::At(Some(max)))) => {
                                min > MAX_REPEAT || *max > MAX_REPEAT || min > *max
                            }
                        };
                        let text = &self.rest()[..len];
                        if too_big {
                            return Err(GoRegexError::new(
                                start,
                                format!("invalid repeat count: {text:?}"),
                            ));
                        }
                        let min = min.unwrap_or(0);
                        let max = match max {
                            None => Some(min),
                            Some(Bound::Unbounded) => None,
                            Some(Bound::At(max)) => max,
                        };
                        self.pos += len;
                        self.repeat(start, RepeatOp::Counted { min, max }, last_was_repeat)?;
                        is_repeat = true;
                    }
                },
                '\\' => self.escape_atom()?,
                _ => {
                    self.pos += c.len_utf8();
                    let fold = self.flags.fold;
                    self.push(Node::Literal { c: c as u32, fold });
                }
            }
            last_was_repeat = is_repeat;
        }
        if self.frames.len() > 1 {
            let offset = self.frames.last().map_or(0, |f| f.offset);
            return Err(GoRegexError::new(offset, "missing closing )"));
        }
        let mut top = self
            .frames
            .pop()
            .ok_or_else(|| GoRegexError::new(0, "internal error"))?;
        let last = std::mem::take(&mut top.current);
        top.alternatives.push(last);
        Ok(GoRegex {
            body: top.alternatives,
        })
    }

    fn open_group(&mut self, offset: usize, capture: Capture) -> Result<(), GoRegexError> {
        if self.frames.len() > MAX_NESTING {
            return Err(GoRegexError::new(offset, "expression nests too deeply"));
        }
        self.frames.push(Frame {
            offset,
            capture,
            outer_flags: self.flags,
            alternatives: Vec::new(),
            current: Vec::new(),
        });
        Ok(())
    }

    fn close_group(&mut self, offset: usize) -> Result<(), GoRegexError> {
        if self.frames.len() < 2 {
            return Err(GoRegexError::new(offset, "unexpected )"));
        }
        let mut frame = self
            .frames
            .pop()
            .ok_or_else(|| GoRegexError::new(offset, "unexpected )"))?;
        let last = std::mem::take(&mut frame.current);
        frame.alternatives.push(last);
        self.flags = frame.outer_flags;
        let height = 1 + frame
            .alternatives
            .iter()
            .flatten()
            .map(Node::height)
            .max()
            .unwrap_or(0);
        if height > MAX_NESTING {
            return Err(GoRegexError::new(frame.offset, "expression nests too deeply"));
        }
        self.push(Node::Group {
            capture: frame.capture,
            body: frame.alternatives,
            height,
        });
        Ok(())
    }

    fn repeat(&mut self, start: usize, op: RepeatOp, last_was_repeat: bool) -> Result<(), GoRegexError> {
        let mut lazy = false;
        if self.peek() == Some('?') {
            self.pos += 1;
            lazy = true;
        }
        let text = self.pattern[start..self.pos].to_string();
        if last_was_repeat {
            return Err(GoRegexError::new(
                start,
                format!("invalid nested repetition operator: {text:?}"),
            ));
        }
        let greedy = !(self.flags.ungreedy ^ lazy);
        let Some(sub) = self.frame().current.pop() else {
            return Err(GoRegexError::new(
                start,
                format!("missing argument to repetition operator: {text:?}"),
            ));
        };
        let height = sub.height() + 1;
        if height > MAX_NESTING {
            return Err(GoRegexError::new(start, "expression nests too deeply"));
        }
        let node = Node::Repeat {
            sub: Box::new(sub),
            op,
            greedy,
            height,
        };
        if let RepeatOp::Counted { min, max } = op {
            if (min >= 2 || max.is_some_and(|m| m >= 2)) && !repeat_is_valid(&node, MAX_REPEAT) {
                return Err(GoRegexError::new(
                    start,
                    format!("invalid repeat count: {text:?}"),
                ));
            }
        }
        self.push(node);
        Ok(())
    }

    /// `(?` at the current position: a named group, a non-capturing group, or flags.
    fn perl_flags(&mut self) -> Result<(), GoRegexError> {
        let start = self.pos;
        let rest = self.rest();
        let with_p = rest.len() > 4 && rest.as_bytes()[2] == b'P' && rest.as_bytes()[3] == b'<';
        let with_angle = rest.len() > 3 && rest.as_bytes()[2] == b'<';
        if with_p || with_angle {
            let name_start = if with_p { 4 } else { 3 };
            let Some(end) = rest.find('>') else {
                return Err(GoRegexError::new(
                    start,
                    format!("invalid named capture: {rest:?}"),
                ));
            };
            let capture = &rest[..=end];
            let name = rest.get(name_start..end).unwrap_or("");
            if name.is_empty() || !name.chars().all(|c| c == '_' || c.is_ascii_alphanumeric()) {
                return Err(GoRegexError::new(
                    start,
                    format!("invalid named capture: {capture:?}"),
                ));
            }
            let name = name.to_string();
            self.pos += end + 1;
            return self.open_group(start, Capture::Named(name));
        }

        self.pos += 2;
        let mut flags = self.flags;
        let mut negate = false;
        let mut saw_flag = false;
        while let Some(c) = self.bump() {
            match c {
                'i' | 'm' | 's' | 'U' => {
                    let on = !negate;
                    match c {
                        'i' => flags.fold = on,
                        'm' => flags.multi_line = on,
                        's' => flags.dot_nl = on,
                        _ => flags.ungreedy = on,
                    }
                    saw_flag = true;
                }
                '-' => {
                    if negate {
                        break;
                    }
                    negate = true;
                    saw_flag = false;
                }
                ':' | ')' => {
                    if negate && !saw_flag {
                        break;
                    }
                    if c == ':' {
                        self.open_group(start, Capture::No)?;
                    }
                    self.flags = flags;
                    return Ok(());
                }
                _ => break,
            }
        }
        let text = &self.pattern[start..self.pos];
        Err(GoRegexError::new(
            start,
            format!("invalid or unsupported Perl syntax: {text:?}"),
        ))
    }

    /// A backslash outside a class.
    fn escape_atom(&mut self) -> Result<(), GoRegexError> {
        let start = self.pos;
        let rest = self.rest();
        if let Some(next) = rest[1..].chars().next() {
            let assertion = match next {
                'A' => Some(Assertion::BeginText),
                'b' => Some(Assertion::WordBoundary),
                'B' => Some(Assertion::NotWordBoundary),
                'z' => Some(Assertion::EndText),
                _ => None,
            };
            if let Some(a) = assertion {
                self.pos += 2;
                self.push(Node::Assert(a));
                return Ok(());
            }
            if next == 'C' {
                return Err(GoRegexError::new(start, "invalid escape sequence: `\\C`"));
            }
            if next == 'Q' {
                let body = &rest[2..];
                let (literal, consumed) = match body.find("\\E") {
                    Some(i) => (&body[..i], 2 + i + 2),
                    None => (body, rest.len()),
                };
                let fold = self.flags.fold;
                for c in literal.chars() {
                    self.push(Node::Literal { c: c as u32, fold });
                }
                self.pos += consumed;
                return Ok(());
            }
            if next == 'p' || next == 'P' {
                let (item, len) = unicode_class(rest, start)?;
                self.pos += len;
                let ClassItem::Unicode { negated, name } = item else {
                    return Err(GoRegexError::new(start, "internal error"));
                };
                let text = format!("\\{}{{{}}}", if negated { 'P' } else { 'p' }, name);
                let fold = self.flags.fold;
                self.push(Node::Class { text, fold });
                return Ok(());
            }
            if let Some(group) = perl_group(next) {
                self.pos += 2;
                let mut class = ClassBuilder::default();
                class.add_group(group, self.flags.fold);
                let fold = self.flags.fold;
                self.push(Node::Class {
                    text: class.finish(false),
                    fold,
                });
                return Ok(());
            }
        }
        let (c, len) = parse_escape(rest, start)?;
        self.pos += len;
        let fold = self.flags.fold;
        self.push(Node::Literal { c, fold });
        Ok(())
    }

    /// A bracketed class at the current position.
    fn class(&mut self) -> Result<Node, GoRegexError> {
        let start = self.pos;
        let whole = self.rest();
        let fold = self.flags.fold;
        let mut t = &whole[1..];
        let mut negated = false;
        if t.starts_with('^') {
            negated = true;
            t = &t[1..];
        }
        let mut class = ClassBuilder::default();
        let mut first = true;
        let mut no_posix_end = false;
        while t.is_empty() || !t.starts_with(']') || first {
            first = false;
            let here = start + (whole.len() - t.len());
            if t.len() > 2 && t.starts_with("[:") && !no_posix_end {
                // Like Go, the name runs to the next `:]` anywhere; once there is none, there
                // is none further on either (this keeps `[[:[:[:...` linear).
                let end = t[2..].find(":]");
                no_posix_end = end.is_none();
                if let Some(i) = end {
                    let name = &t[..i + 4];
                    let Some(group) = posix_group(name) else {
                        return Err(GoRegexError::new(
                            here,
                            format!("invalid character class range: {name:?}"),
                        ));
                    };
                    class.add_group(group, fold);
                    t = &t[i + 4..];
                    continue;
                }
            }
            if t.starts_with("\\p") || t.starts_with("\\P") {
                let (item, len) = unicode_class(t, here)?;
                class.items.push(item);
                t = &t[len..];
                continue;
            }
            if t.starts_with('\\') {
                if let Some(group) = t[1..].chars().next().and_then(perl_group) {
                    class.add_group(group, fold);
                    t = &t[2..];
                    continue;
                }
            }
            let range_text = t;
            let (lo, len) = class_char(t, here, whole)?;
            t = &t[len..];
            let mut hi = lo;
            if t.len() >= 2 && t.starts_with('-') && !t[1..].starts_with(']') {
                let (h, len) = class_char(&t[1..], here, whole)?;
                t = &t[1 + len..];
                hi = h;
                if hi < lo {
                    let text = &range_text[..range_text.len() - t.len()];
                    return Err(GoRegexError::new(
                        here,
                        format!("invalid character class range: {text:?}"),
                    ));
                }
            }
            class.items.push(ClassItem::Range(lo, hi));
        }
        t = &t[1..];
        self.pos = start + (whole.len() - t.len());
        Ok(Node::Class {
            text: class.finish(negated),
            fold,
        })
    }
}

/// Go's `repeatIsValid`: the product of nested counted repetitions stays within `n`.
fn repeat_is_valid(node: &Node, mut n: u32) -> bool {
    match node {
        Node::Repeat { sub, op, .. } => {
            if let RepeatOp::Counted { min, max } = op {
                let m = max.unwrap_or(*min);
                if *max == Some(0) {
                    return true;
                }
                if m > n {
                    return false;
                }
                if let Some(q) = n.checked_div(m) {
                    n = q;
                }
            }
            repeat_is_valid(sub, n)
        }
        Node::Group { body, .. } => body.iter().flatten().all(|sub| repeat_is_valid(sub, n)),
        _ => true,
    }
}

enum Bound {
    Unbounded,
    /// `None`: a number too large to represent.
    At(Option<u32>),
}

/// Go's `parseRepeat`: `{n}`, `{n,}` or `{n,m}` at the start of `s`, as (min, max, length).
/// `min` is `None` when a number is too large. `None` overall: not a count, so `{` is literal.
fn parse_repeat(s: &str) -> Option<(Option<u32>, Option<Bound>, usize)> {
    let b = s.as_bytes();
    let mut i = 1;
    let (min, len) = parse_int(&b[i..])?;
    i += len;
    let max = match b.get(i)? {
        b',' => {
            i += 1;
            if *b.get(i)? == b'}' {
                Some(Bound::Unbounded)
            } else {
                let (max, len) = parse_int(&b[i..])?;
                i += len;
                Some(Bound::At(max))
            }
        }
        _ => None,
    };
    if b.get(i) != Some(&b'}') {
        return None;
    }
    Some((min, max, i + 1))
}

/// Go's `parseInt`: decimal digits without a leading zero; the value is `None` past 10^8.
fn parse_int(b: &[u8]) -> Option<(Option<u32>, usize)> {
    if !b.first()?.is_ascii_digit() {
        return None;
    }
    if b.len() >= 2 && b[0] == b'0' && b[1].is_ascii_digit() {
        return None;
    }
    let len = b.iter().take_while(|c| c.is_ascii_digit()).count();
    let mut n: u32 = 0;
    for &d in &b[..len] {
        if n >= 100_000_000 {
            return Some((None, len));
        }
        n = n * 10 + u32::from(d - b'0');
    }
    Some((Some(n), len))
}

/// Go's `parseEscape`: `s` starts with a backslash; returns the code point and the length used.
fn parse_escape(s: &str, offset: usize) -> Result<(u32, usize), GoRegexError> {
    let t = &s[1..];
    let Some(c) = t.chars().next() else {
        return Err(GoRegexError::new(
            offset,
            "trailing backslash at end of expression",
        ));
    };
    let invalid = |len: usize| {
        let text = s.get(..len).unwrap_or(s);
        GoRegexError::new(offset, format!("invalid escape sequence: {text:?}"))
    };
    let b = t.as_bytes();
    match c {
        '1'..='7' if !b.get(1).is_some_and(|d| (b'0'..=b'7').contains(d)) => Err(invalid(2)),
        '0'..='7' => {
            let mut r = u32::from(b[0] - b'0');
            let mut len = 1;
            while len < 3 && b.get(len).is_some_and(|d| (b'0'..=b'7').contains(d)) {
                r = r * 8 + u32::from(b[len] - b'0');
                len += 1;
            }
            Ok((r, 1 + len))
        }
        'x' => {
            let Some(&first) = b.get(1) else {
                return Err(invalid(2));
            };
            if first == b'{' {
                let mut r: u32 = 0;
                let mut digits = 0;
                let mut i = 2;
                loop {
                    let Some(&d) = b.get(i) else {
                        return Err(invalid(1 + i));
                    };
                    i += 1;
                    if d == b'}' {
                        break;
                    }
                    let Some(v) = (d as char).to_digit(16) else {
                        return Err(invalid(1 + i));
                    };
                    r = r * 16 + v;
                    if r > 0x10FFFF {
                        return Err(invalid(1 + i));
                    }
                    digits += 1;
                }
                if digits == 0 {
                    return Err(invalid(1 + i));
                }
                return Ok((r, 1 + i));
            }
            let x = (first as char).to_digit(16);
            let y = b.get(2).and_then(|&d| (d as char).to_digit(16));
            match (x, y) {
                (Some(x), Some(y)) => Ok((x * 16 + y, 4)),
                _ => Err(invalid(s.len().min(4))),
            }
        }
        'a' => Ok((0x07, 2)),
        'f' => Ok((0x0C, 2)),
        'n' => Ok((0x0A, 2)),
        'r' => Ok((0x0D, 2)),
        't' => Ok((0x09, 2)),
        'v' => Ok((0x0B, 2)),
        c if c.is_ascii() && !c.is_ascii_alphanumeric() => Ok((c as u32, 2)),
        c => Err(invalid(1 + c.len_utf8())),
    }
}

/// Go's `parseClassChar`: one character of a class, escaped or not.
fn class_char(t: &str, offset: usize, whole: &str) -> Result<(u32, usize), GoRegexError> {
    match t.chars().next() {
        None => Err(GoRegexError::new(offset, format!("missing closing ]: {whole:?}"))),
        Some('\\') => parse_escape(t, offset),
        Some(c) => Ok((c as u32, c.len_utf8())),
    }
}

/// `\p` or `\P` at the start of `s`: the class item and the length used.
fn unicode_class(s: &str, offset: usize) -> Result<(ClassItem, usize), GoRegexError> {
    let mut negated = s.as_bytes()[1] == b'P';
    let t = &s[2..];
    let (seq_len, name) = match t.chars().next() {
        Some('{') => {
            let Some(end) = s.find('}') else {
                return Err(GoRegexError::new(
                    offset,
                    format!("invalid character class range: {s:?}"),
                ));
            };
            (end + 1, &s[3..end])
        }
        Some(c) => (2 + c.len_utf8(), &t[..c.len_utf8()]),
        None => (2, ""),
    };
    let seq = &s[..seq_len];
    let name = match name.strip_prefix('^') {
        Some(rest) => {
            negated = !negated;
            rest
        }
        None => name,
    };
    match unicode_name(name) {
        Some(name) => Ok((ClassItem::Unicode { negated, name }, seq_len)),
        None => Err(GoRegexError::new(
            offset,
            format!(
                "invalid character class range: {seq:?} (Berth accepts the general categories \
                 other than C and Cs, Any, and one-word script names, spelled as Go's tables spell them)"
            ),
        )),
    }
}

/// The Unicode class names accepted here: a subset of what Go accepts, spelled the same way in
/// both engines and meaning the same set there.
fn unicode_name(name: &str) -> Option<&'static str> {
    #[rustfmt::skip]
    const NAMES: &[&str] = &[
        // general categories
        "Any", "L", "Ll", "Lm", "Lo", "Lt", "Lu", "M", "Mc", "Me", "Mn", "N", "Nd", "Nl", "No", "P",
        "Pc", "Pd", "Pe", "Pf", "Pi", "Po", "Ps", "S", "Sc", "Sk", "Sm", "So", "Z", "Zl", "Zp", "Zs",
        "Cc", "Cf", "Co",
        // scripts: Go's table names without an underscore or inner capital
        "Adlam", "Ahom", "Arabic", "Armenian", "Avestan", "Balinese", "Bamum", "Batak", "Bengali",
        "Bhaiksuki", "Bopomofo", "Brahmi", "Braille", "Buginese", "Buhid", "Carian", "Chakma", "Cham",
        "Cherokee", "Chorasmian", "Common", "Coptic", "Cuneiform", "Cypriot", "Cyrillic", "Deseret",
        "Devanagari", "Dogra", "Duployan", "Elbasan", "Elymaic", "Ethiopic", "Georgian", "Glagolitic",
        "Gothic", "Grantha", "Greek", "Gujarati", "Gurmukhi", "Han", "Hangul", "Hanunoo", "Hatran",
        "Hebrew", "Hiragana", "Inherited", "Javanese", "Kaithi", "Kannada", "Katakana", "Kawi",
        "Kharoshthi", "Khmer", "Khojki", "Khudawadi", "Lao", "Latin", "Lepcha", "Limbu", "Lisu",
        "Lycian", "Lydian", "Mahajani", "Makasar", "Malayalam", "Mandaic", "Manichaean", "Marchen",
        "Medefaidrin", "Miao", "Modi", "Mongolian", "Mro", "Multani", "Myanmar", "Nabataean",
        "Nandinagari", "Newa", "Nko", "Nushu", "Ogham", "Oriya", "Osage", "Osmanya", "Palmyrene",
        "Phoenician", "Rejang", "Runic", "Samaritan", "Saurashtra", "Sharada", "Shavian", "Siddham",
        "Sinhala", "Sogdian", "Soyombo", "Sundanese", "Syriac", "Tagalog", "Tagbanwa", "Takri",
        "Tamil", "Tangsa", "Tangut", "Telugu", "Thaana", "Thai", "Tibetan", "Tifinagh", "Tirhuta",
        "Toto", "Ugaritic", "Vai", "Vithkuqi", "Wancho", "Yezidi", "Yi",
    ];
    NAMES.iter().copied().find(|n| *n == name)
}

/// An ASCII class of Go's tables, as inclusive ranges, and whether it is negated.
type Group = (bool, &'static [(u32, u32)]);

fn perl_group(c: char) -> Option<Group> {
    const DIGIT: &[(u32, u32)] = &[(0x30, 0x39)];
    const SPACE: &[(u32, u32)] = &[(0x09, 0x0A), (0x0C, 0x0D), (0x20, 0x20)];
    const WORD: &[(u32, u32)] = &[(0x30, 0x39), (0x41, 0x5A), (0x5F, 0x5F), (0x61, 0x7A)];
    match c {
        'd' => Some((false, DIGIT)),
        'D' => Some((true, DIGIT)),
        's' => Some((false, SPACE)),
        'S' => Some((true, SPACE)),
        'w' => Some((false, WORD)),
        'W' => Some((true, WORD)),
        _ => None,
    }
}

fn posix_group(name: &str) -> Option<Group> {
    let (negated, base) = match name.strip_prefix("[:^") {
        Some(rest) => (true, rest),
        None => (false, name.strip_prefix("[:")?),
    };
    let ranges: &'static [(u32, u32)] = match base {
        "alnum:]" => &[(0x30, 0x39), (0x41, 0x5A), (0x61, 0x7A)],
        "alpha:]" => &[(0x41, 0x5A), (0x61, 0x7A)],
        "ascii:]" => &[(0x00, 0x7F)],
        "blank:]" => &[(0x09, 0x09), (0x20, 0x20)],
        "cntrl:]" => &[(0x00, 0x1F), (0x7F, 0x7F)],
        "digit:]" => &[(0x30, 0x39)],
        "graph:]" => &[(0x21, 0x7E)],
        "lower:]" => &[(0x61, 0x7A)],
        "print:]" => &[(0x20, 0x7E)],
        "punct:]" => &[(0x21, 0x2F), (0x3A, 0x40), (0x5B, 0x60), (0x7B, 0x7E)],
        "space:]" => &[(0x09, 0x0D), (0x20, 0x20)],
        "upper:]" => &[(0x41, 0x5A)],
        "word:]" => &[(0x30, 0x39), (0x41, 0x5A), (0x5F, 0x5F), (0x61, 0x7A)],
        "xdigit:]" => &[(0x30, 0x39), (0x41, 0x46), (0x61, 0x66)],
        _ => return None,
    };
    Some((negated, ranges))
}

// ----------------------------------------------------------------------------------------------
// Classes

#[derive(Debug, Clone)]
enum ClassItem {
    /// A range the user wrote; Rust folds it under `(?i)` exactly as Go does.
    Range(u32, u32),
    /// A precomputed set, already case-folded where Go folds it.
    Set(Vec<(u32, u32)>),
    Unicode {
        negated: bool,
        name: &'static str,
    },
}

#[derive(Default)]
struct ClassBuilder {
    items: Vec<ClassItem>,
}

const SURROGATES: (u32, u32) = (0xD800, 0xDFFF);
const MAX_CHAR: u32 = 0x10FFFF;

impl ClassBuilder {
    /// Adds an ASCII group the way Go's `appendGroup` does: case-folded first when `fold`, then
    /// negated if the group is negated.
    fn add_group(&mut self, (negated, ranges): Group, fold: bool) {
        let mut set: Vec<(u32, u32)> = ranges.to_vec();
        if fold {
            set = fold_ascii(&set);
        }
        if negated {
            set = negate(&set);
        }
        self.items.push(ClassItem::Set(set));
    }

    /// Writes the class in syntax that Go and Rust read alike.
    fn finish(self, negated: bool) -> String {
        let mut body = String::new();
        let mut any = false;
        for item in &self.items {
            match item {
                ClassItem::Range(lo, hi) => {
                    for (lo, hi) in without_surrogates(*lo, *hi) {
                        push_range(&mut body, lo, hi);
                        any = true;
                    }
                }
                ClassItem::Set(set) => {
                    for &(lo, hi) in set {
                        for (lo, hi) in without_surrogates(lo, hi) {
                            push_range(&mut body, lo, hi);
                            any = true;
                        }
                    }
                }
                ClassItem::Unicode { negated, name } => {
                    let _ = write!(body, "\\{}{{{}}}", if *negated { 'P' } else { 'p' }, name);
                    any = true;
                }
            }
        }
        match (any, negated) {
            // Only surrogates, which never match text: nothing, or everything when negated.
            (false, false) => NEVER.to_string(),
            (false, true) => format!("[\\x{{0}}-\\x{{{MAX_CHAR:X}}}]"),
            (true, false) => format!("[{body}]"),
            (true, true) => format!("[^{body}]"),
        }
    }
}

/// A class that matches no character, valid in both syntaxes.
const NEVER: &str = "[^\\x{0}-\\x{10FFFF}]";

fn without_surrogates(lo: u32, hi: u32) -> Vec<(u32, u32)> {
    let mut out = Vec::new();
    if lo < SURROGATES.0 {
        out.push((lo, hi.min(SURROGATES.0 - 1)));
    }
    if hi > SURROGATES.1 {
        out.push((lo.max(SURROGATES.1 + 1), hi));
    }
    out
}

fn push_range(out: &mut String, lo: u32, hi: u32) {
    push_code_point(out, lo);
    if hi != lo {
        out.push('-');
        push_code_point(out, hi);
    }
}

/// Case-folds a set of ASCII ranges the way Go's simple folding does: letters gain their other
/// case, `s` gains U+017F (long s) and `k` gains U+212A (Kelvin sign).
fn fold_ascii(set: &[(u32, u32)]) -> Vec<(u32, u32)> {
    let mut points: Vec<(u32, u32)> = set.to_vec();
    let contains = |c: u32| set.iter().any(|&(lo, hi)| lo <= c && c <= hi);
    for c in u32::from(b'A')..=u32::from(b'Z') {
        let lower = c + 32;
        if contains(c) || contains(lower) {
            points.push((c, c));
            points.push((lower, lower));
            if c == u32::from(b'S') {
                points.push((0x017F, 0x017F));
            }
            if c == u32::from(b'K') {
                points.push((0x212A, 0x212A));
            }
        }
    }
    normalize(points)
}

fn normalize(mut ranges: Vec<(u32, u32)>) -> Vec<(u32, u32)> {
    ranges.sort_unstable();
    let mut out: Vec<(u32, u32)> = Vec::with_capacity(ranges.len());
    for (lo, hi) in ranges {
        match out.last_mut() {
            Some(last) if lo <= last.1.saturating_add(1) => last.1 = last.1.max(hi),
            _ => out.push((lo, hi)),
        }
    }
    out
}

fn negate(set: &[(u32, u32)]) -> Vec<(u32, u32)> {
    let mut out = Vec::new();
    let mut next = 0u32;
    for &(lo, hi) in &normalize(set.to_vec()) {
        if lo > next {
            out.push((next, lo - 1));
        }
        next = hi + 1;
    }
    if next <= MAX_CHAR {
        out.push((next, MAX_CHAR));
    }
    out
}

// ----------------------------------------------------------------------------------------------
// Emitting Rust syntax

/// The flags that change what an atom matches; `U` never appears in the output.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
struct Emitted {
    fold: bool,
    multi_line: bool,
    dot_nl: bool,
}

#[derive(Default)]
struct Emitter {
    out: String,
    state: Emitted,
    names: HashSet<String>,
}

impl Emitter {
    fn alternation(&mut self, body: &[Vec<Node>]) {
        for (i, branch) in body.iter().enumerate() {
            if i > 0 {
                self.out.push('|');
            }
            for node in branch {
                self.node(node);
            }
        }
    }

    /// Switches the emitted flags so that the next atom reads as Go read it.
    fn require(&mut self, fold: Option<bool>, multi_line: Option<bool>, dot_nl: Option<bool>) {
        let mut next = self.state;
        if let Some(f) = fold {
            next.fold = f;
        }
        if let Some(m) = multi_line {
            next.multi_line = m;
        }
        if let Some(s) = dot_nl {
            next.dot_nl = s;
        }
        if next == self.state {
            return;
        }
        let mut on = String::new();
        let mut off = String::new();
        for (set, letter) in [(next.fold, 'i'), (next.multi_line, 'm'), (next.dot_nl, 's')] {
            if set {
                on.push(letter);
            } else {
                off.push(letter);
            }
        }
        self.out.push_str("(?");
        self.out.push_str(&on);
        if !off.is_empty() {
            self.out.push('-');
            self.out.push_str(&off);
        }
        self.out.push(')');
        self.state = next;
    }

    fn node(&mut self, node: &Node) {
        match node {
            Node::Literal { c, fold } => {
                self.require(Some(*fold), None, None);
                if (SURROGATES.0..=SURROGATES.1).contains(c) {
                    self.out.push_str(NEVER);
                } else {
                    push_code_point(&mut self.out, *c);
                }
            }
            Node::Class { text, fold } => {
                self.require(Some(*fold), None, None);
                self.out.push_str(text);
            }
            Node::Dot { dot_nl } => {
                self.require(None, None, Some(*dot_nl));
                self.out.push('.');
            }
            Node::Assert(a) => match a {
                Assertion::BeginLine | Assertion::BeginText => {
                    self.require(None, Some(*a == Assertion::BeginLine), None);
                    self.out.push('^');
                }
                Assertion::EndLine | Assertion::EndText => {
                    self.require(None, Some(*a == Assertion::EndLine), None);
                    self.out.push('$');
                }
                Assertion::WordBoundary => self.out.push_str("(?-u:\\b)"),
                Assertion::NotWordBoundary => self.out.push_str("(?-u:\\B)"),
            },
            Node::Group { capture, body, .. } => {
                match capture {
                    Capture::No => self.out.push_str("(?:"),
                    Capture::Unnamed => self.out.push('('),
                    Capture::Named(name) => {
                        let rust_ok = name.chars().next().is_some_and(|c| !c.is_ascii_digit());
                        if rust_ok && self.names.insert(name.clone()) {
                            let _ = write!(self.out, "(?P<{name}>");
                        } else {
                            self.out.push('(');
                        }
                    }
                }
                let outer = self.state;
                self.alternation(body);
                self.state = outer;
                self.out.push(')');
            }
            Node::Repeat { sub, op, greedy, .. } => {
                if matches!(**sub, Node::Repeat { .. }) {
                    self.out.push_str("(?:");
                    let outer = self.state;
                    self.node(sub);
                    self.state = outer;
                    self.out.push(')');
                } else {
                    self.node(sub);
                }
                match op {
                    RepeatOp::Star => self.out.push('*'),
                    RepeatOp::Plus => self.out.push('+'),
                    RepeatOp::Quest => self.out.push('?'),
                    RepeatOp::Counted { min, max: Some(max) } if min == max => {
                        let _ = write!(self.out, "{{{min}}}");
                    }
                    RepeatOp::Counted { min, max: Some(max) } => {
                        let _ = write!(self.out, "{{{min},{max}}}");
                    }
                    RepeatOp::Counted { min, max: None } => {
                        let _ = write!(self.out, "{{{min},}}");
                    }
                }
                if !greedy {
                    self.out.push('?');
                }
            }
        }
    }
}

/// Writes one character so that both syntaxes read it as that literal character, inside a class
/// or out of one. Anything but printable ASCII is written as `\x{..}`: the output is ASCII (v3
/// `HostRegexp` takes nothing else) and look-alikes (`K`, the Kelvin sign) stay apart.
fn push_code_point(out: &mut String, c: u32) {
    let Some(ch) = char::from_u32(c) else {
        // Surrogates are filtered out before this point.
        let _ = write!(out, "\\x{{{c:X}}}");
        return;
    };
    if ch.is_ascii_graphic() || ch == ' ' {
        if "\\.+*?()|[]{}^$#&-~".contains(ch) {
            out.push('\\');
        }
        out.push(ch);
    } else {
        let _ = write!(out, "\\x{{{c:X}}}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rust(go: &str) -> String {
        match translate(go) {
            Ok(r) => r,
            Err(e) => panic!("{go:?} should translate: {e:?}"),
        }
    }

    fn rejects(go: &str) {
        assert!(
            translate(go).is_err(),
            "{go:?} should be rejected, got {:?}",
            translate(go)
        );
    }

    #[test]
    fn plain_patterns_pass_through() {
        assert_eq!(rust(r"^[a-zA-Z-]+\.com$"), r"^[a-zA-Z\-]+\.com$");
        assert_eq!(rust("^/(css|js)"), "^/(css|js)");
        assert_eq!(rust(""), "");
        assert_eq!(rust("a|"), "a|");
    }

    #[test]
    fn braces_that_are_not_counts_are_literals() {
        assert_eq!(rust("/{path:(css|js)}"), r"/\{path:(css|js)\}");
        assert_eq!(rust("http{secure:s?}"), r"http\{secure:s?\}");
        assert_eq!(rust("a{,5}"), r"a\{,5\}");
        assert_eq!(rust("a{01}"), r"a\{01\}");
        assert_eq!(rust("a{2}"), "a{2}");
        assert_eq!(rust("a{2,}"), "a{2,}");
        assert_eq!(rust("a{2,3}?"), "a{2,3}?");
    }

    #[test]
    fn go_repetition_rules() {
        rejects("a**");
        rejects("a*+");
        rejects("a{2}{3}");
        rejects("*a");
        rejects("(*a)");
        rejects("a|*");
        rejects("a{1001}");
        rejects("a{3,2}");
        rejects("(a{100}){11}");
        rejects("((a{10}){10}){11}");
        assert_eq!(rust("(a{100}){10}"), "(a{100}){10}");
        assert_eq!(rust("(a{0}){1000}"), "(a{0}){1000}");
        // A repetition after a flag group repeats the atom before the group.
        assert_eq!(rust("a(?i)*"), "a*");
        assert_eq!(rust("a*(?i)*"), "(?:a*)*");
        // Greediness is written out; U never reaches the output.
        assert_eq!(rust("(?U)a*b*?"), "a*?b*");
    }

    #[test]
    fn flags_are_resolved_per_atom() {
        assert_eq!(rust("(?i)abc"), "(?i-ms)abc");
        assert_eq!(rust("a(?i:b)c"), "a(?:(?i-ms)b)c");
        assert_eq!(rust("(?s)a."), "a(?s-im).");
        assert_eq!(rust("(?m)^a$"), "(?m-is)^a$");
        assert_eq!(rust("(?i-i)a"), "a");
        assert_eq!(rust("(?)a"), "a");
        rejects("(?-)a");
        rejects("(?i-)a");
        rejects("(?--i)a");
        rejects("(?x)a");
        rejects("(?=a)");
        rejects("(?#c)");
    }

    #[test]
    fn perl_classes_are_ascii() {
        assert_eq!(rust(r"\d"), "[0-9]");
        assert_eq!(rust(r"\s"), r"[\x{9}-\x{A}\x{C}-\x{D} ]");
        assert_eq!(rust(r"\w"), r"[0-9A-Z_a-z]");
        assert_eq!(rust(r"(?i)\w"), r"(?i-ms)[0-9A-Z_a-z\x{17F}\x{212A}]");
        assert_eq!(rust(r"[[:alpha:]]"), "[A-Za-z]");
        assert_eq!(rust(r"[^[:^digit:]x]").matches("[^").count(), 1);
        rejects("[[:foo:]]");
        assert_eq!(rust("[[:a]"), r"[\[:a]");
        let many = format!("[{}a]", "[:".repeat(20_000));
        assert!(translate(&many).is_ok());
    }

    #[test]
    fn boundaries_and_escapes() {
        assert_eq!(rust(r"\bfoo\B"), r"(?-u:\b)foo(?-u:\B)");
        assert_eq!(rust(r"\Aa\z"), "^a$");
        assert_eq!(rust(r"\012\0\x41\x{263a}é"), r"\x{A}\x{0}A\x{263A}\x{E9}");
        assert_eq!(rust(r"\Qa.b\E+"), r"a\.b+");
        assert_eq!(rust(r"\Qa.b"), r"a\.b");
        rejects(r"\1");
        rejects(r"\8");
        rejects(r"\C");
        rejects(r"\e");
        rejects(r"\é");
        rejects("a\\");
        rejects(r"\x{110000}");
        rejects(r"\x{}");
        rejects(r"\xZ1");
        rejects(r"[\b]");
    }

    #[test]
    fn classes() {
        assert_eq!(rust("[]a]"), r"[\]a]");
        assert_eq!(rust("[a-]"), r"[a\-]");
        assert_eq!(rust("[a-b-c]"), r"[a-b\-c]");
        rejects("[b-a]");
        rejects("[a");
        rejects("[]");
        assert_eq!(rust(r"[\x{D800}]"), NEVER);
        assert_eq!(rust(r"[^\x{D800}]"), r"[\x{0}-\x{10FFFF}]");
        assert_eq!(rust(r"\pL\p{Greek}\P{^Lu}"), r"\p{L}\p{Greek}\p{Lu}");
        rejects(r"\pC");
        rejects(r"\p{Cs}");
        rejects(r"\p{greek}");
        rejects(r"\p");
        rejects(r"\p{Greek");
    }

    #[test]
    fn groups() {
        assert_eq!(rust("(?P<v0>a)(?<name>b)"), "(?P<v0>a)(?P<name>b)");
        assert_eq!(rust("(?P<a>x)(?P<a>y)"), "(?P<a>x)(y)");
        assert_eq!(rust("(?P<1>x)"), "(x)");
        rejects("(?P<>x)");
        rejects("(?P<a-b>x)");
        rejects("(?P<a");
        rejects("(a");
        rejects("a)");
        assert!(translate(&"(".repeat(1001)).is_err());
    }

    #[test]
    fn emitted_patterns_compile_in_rust_and_are_fixed_points() {
        for go in [
            r"^[a-zA-Z-]+\.com$",
            "(?i)a(?s:.)b$",
            r"\bfoo\B",
            r"[^[:^digit:]x]",
            r"(?i)[\W\d]",
            "a*(?i)*",
            r"\pL\p{Greek}\P{^Lu}",
            r"[\x{D800}-\x{E000}]",
            "(?U)a+?b{2,}",
            "(?m)^a|b$",
        ] {
            let first = rust(go);
            assert!(
                regex::Regex::new(&first).is_ok(),
                "{go:?} -> {first:?} does not compile"
            );
            let second = rust(&to_go_syntax(&first));
            assert_eq!(first, second, "{go:?} is not a fixed point");
        }
    }

    #[test]
    fn answers_match_go() {
        // Each row: Go pattern, input, what Go's regexp.MatchString answers.
        let rows: &[(&str, &str, bool)] = &[
            (r"(?i)\w", "\u{17F}", true),
            (r"(?i)\W", "\u{17F}", false),
            (r"\d", "٣", false),
            (r"\s", "\u{B}", false),
            (r"\bé", "aé", true),
            (r"a\b", "ab", false),
            (r"a\b", "aé", true),
            ("/{path:(css|js)}", "/{path:css}", true),
            ("a(?i)b|c", "C", true),
            ("(?U)a+", "aaa", true),
            ("^a$", "a\n", false),
            ("(?m)^b$", "a\nb", true),
            ("[^a]", "\n", true),
            (".", "\n", false),
        ];
        for (go, input, expected) in rows {
            let re = regex::Regex::new(&rust(go)).map_err(|e| e.to_string());
            assert_eq!(
                re.map(|r| r.is_match(input)),
                Ok(*expected),
                "{go:?} on {input:?}"
            );
        }
    }

    #[test]
    fn begin_assertions_are_reported() {
        let has = |p: &str| parse(p).map(|r| r.has_begin_assertion());
        assert_eq!(has("a^"), Ok(true));
        assert_eq!(has(r"(\A)"), Ok(true));
        assert_eq!(has("a$"), Ok(false));
    }

    #[test]
    fn quote_meta_matches_go() {
        assert_eq!(quote_meta("a.b{c}|$"), r"a\.b\{c\}\|\$");
        assert_eq!(quote_meta("-#&~"), "-#&~");
    }
}
