//! The shape of a Traefik rule: the boolean expression over matcher calls, read the way Traefik
//! reads it.
//!
//! Traefik hands the rule to Go's own expression parser (`go/parser.ParseExpr`, through
//! `vulcand/predicate`) and then accepts only matcher calls with string-literal arguments joined
//! by `&&`, `||`, `!` and parentheses. So the rule's lexical grammar is Go's: `&&` binds tighter
//! than `||`, both associate to the left, `!` binds tightest; strings are Go raw strings
//! (`` `...` ``, carriage returns dropped) or interpreted strings (`"..."` with Go escapes);
//! `/* */` and `//` comments are whitespace; a call may end its arguments with `...` and a comma
//! (`Host(`a`,)`); a newline right after a name, a string or `)` ends the expression (Go's
//! automatic semicolon), so only whitespace and comments may follow it. A byte-order mark is
//! skipped at the start and is an error anywhere else, as is a NUL character.
//!
//! Differences kept on purpose: an interpreted string whose escapes make invalid UTF-8 (`"\xff"`)
//! is rejected (Berth's matchers are UTF-8 text), and expressions nested more than
//! [`MAX_NESTING`] levels deep are rejected rather than risking the stack.
//!
//! Not for: what a matcher name means or how many arguments it takes (`v3.rs`, `v2.rs`).

use super::{RuleError, RuleErrorKind};

/// Parentheses and `!` nested deeper than this are rejected.
pub(crate) const MAX_NESTING: usize = 100;

/// A parsed rule: the boolean structure as written (parentheses that group a list are kept as a
/// nested list; redundant ones vanish).
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Expr {
    /// `a && b && ...`, at least two operands.
    And(Vec<Expr>),
    /// `a || b || ...`, at least two operands.
    Or(Vec<Expr>),
    Not {
        operand: Box<Expr>,
        position: usize,
    },
    Call(Call),
}

/// A matcher call: `Name(args)`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Call {
    pub(crate) name: String,
    /// Byte offset of the name.
    pub(crate) position: usize,
    pub(crate) args: Vec<Arg>,
}

/// One string argument, unquoted.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Arg {
    pub(crate) value: String,
    /// Byte offset of the opening quote.
    pub(crate) position: usize,
}

/// Parses the boolean structure of `rule`.
pub(crate) fn parse(rule: &str) -> Result<Expr, RuleError> {
    let tokens = lex(rule)?;
    let mut parser = Parser {
        tokens: &tokens,
        next: 0,
        depth: 0,
        rule_len: rule.len(),
    };
    let expr = parser.or_expr()?;
    let mut newline = false;
    if parser.peek().kind == Kind::Semicolon {
        parser.next += 1;
        newline = true;
    }
    let token = parser.peek();
    if token.kind != Kind::Eof {
        let kind = if newline {
            RuleErrorKind::UnexpectedNewline
        } else {
            RuleErrorKind::Unexpected {
                found: token.describe(),
                expected: "&&, || or the end of the rule",
            }
        };
        return Err(RuleError {
            position: token.start,
            kind,
        });
    }
    Ok(expr)
}

// ----------------------------------------------------------------------------------------------
// Tokens

#[derive(Debug, Clone, PartialEq)]
enum Kind {
    Ident(String),
    Str(String),
    LParen,
    RParen,
    Comma,
    AndAnd,
    OrOr,
    Bang,
    Ellipsis,
    /// Go's automatic semicolon, inserted at a newline (or the end) after a name, a string or `)`.
    Semicolon,
    Eof,
}

#[derive(Debug, Clone)]
struct Token {
    kind: Kind,
    start: usize,
    /// Only blanks follow: an implicit semicolon here is the end of the rule, not a line break.
    at_end: bool,
}

impl Token {
    fn describe(&self) -> String {
        match &self.kind {
            Kind::Ident(name) => format!("`{name}`"),
            Kind::Str(_) => "a string".into(),
            Kind::LParen => "`(`".into(),
            Kind::RParen => "`)`".into(),
            Kind::Comma => "`,`".into(),
            Kind::AndAnd => "`&&`".into(),
            Kind::OrOr => "`||`".into(),
            Kind::Bang => "`!`".into(),
            Kind::Ellipsis => "`...`".into(),
            Kind::Semicolon => "a newline".into(),
            Kind::Eof => "the end of the rule".into(),
        }
    }
}

fn lex(rule: &str) -> Result<Vec<Token>, RuleError> {
    let mut lexer = Lexer {
        src: rule,
        pos: 0,
        tokens: Vec::new(),
    };
    if rule.starts_with('\u{FEFF}') {
        lexer.pos = '\u{FEFF}'.len_utf8();
    }
    lexer.run()?;
    Ok(lexer.tokens)
}

struct Lexer<'a> {
    src: &'a str,
    pos: usize,
    tokens: Vec<Token>,
}

fn err(position: usize, kind: RuleErrorKind) -> RuleError {
    RuleError { position, kind }
}

/// Characters Go's scanner refuses anywhere in the source.
fn check_illegal(c: char, position: usize) -> Result<(), RuleError> {
    match c {
        '\0' => Err(err(position, RuleErrorKind::IllegalCharacter { character: c })),
        '\u{FEFF}' => Err(err(position, RuleErrorKind::IllegalCharacter { character: c })),
        _ => Ok(()),
    }
}

impl Lexer<'_> {
    fn peek(&self) -> Option<char> {
        self.src[self.pos..].chars().next()
    }

    fn push(&mut self, kind: Kind, start: usize) {
        self.tokens.push(Token {
            kind,
            start,
            at_end: false,
        });
    }

    fn run(&mut self) -> Result<(), RuleError> {
        loop {
            self.skip_blank(true)?;
            let start = self.pos;
            let Some(c) = self.peek() else {
                self.push(Kind::Eof, start);
                return Ok(());
            };
            let rest = &self.src[self.pos..];
            let mut ends_line = false;
            match c {
                '(' => {
                    self.pos += 1;
                    self.push(Kind::LParen, start);
                }
                ')' => {
                    self.pos += 1;
                    self.push(Kind::RParen, start);
                    ends_line = true;
                }
                ',' => {
                    self.pos += 1;
                    self.push(Kind::Comma, start);
                }
                '!' if !rest.starts_with("!=") => {
                    self.pos += 1;
                    self.push(Kind::Bang, start);
                }
                '&' if rest.starts_with("&&") => {
                    self.pos += 2;
                    self.push(Kind::AndAnd, start);
                }
                '|' if rest.starts_with("||") => {
                    self.pos += 2;
                    self.push(Kind::OrOr, start);
                }
                '.' if rest.starts_with("...") => {
                    self.pos += 3;
                    self.push(Kind::Ellipsis, start);
                }
                '`' => {
                    let value = self.raw_string()?;
                    self.push(Kind::Str(value), start);
                    ends_line = true;
                }
                '"' => {
                    let value = self.interpreted_string()?;
                    self.push(Kind::Str(value), start);
                    ends_line = true;
                }
                '\'' => return Err(err(start, RuleErrorKind::SingleQuote)),
                c if c == '_' || c.is_alphabetic() => {
                    let len: usize = rest
                        .chars()
                        .take_while(|c| *c == '_' || c.is_alphanumeric())
                        .map(char::len_utf8)
                        .sum();
                    self.pos += len;
                    self.push(Kind::Ident(rest[..len].to_string()), start);
                    ends_line = true;
                }
                c => {
                    check_illegal(c, start)?;
                    return Err(err(start, RuleErrorKind::UnexpectedCharacter { character: c }));
                }
            }
            if ends_line && self.semicolon_follows()? {
                let at = self.pos;
                self.tokens.push(Token {
                    kind: Kind::Semicolon,
                    start: at,
                    at_end: self.src[at..].trim().is_empty(),
                });
            }
        }
    }

    /// Skips spaces, tabs, carriage returns, comments and (when `newlines`) line feeds.
    fn skip_blank(&mut self, newlines: bool) -> Result<(), RuleError> {
        loop {
            let rest = &self.src[self.pos..];
            match rest.chars().next() {
                Some(' ' | '\t' | '\r') => self.pos += 1,
                Some('\n') if newlines => self.pos += 1,
                Some('/') if rest.starts_with("//") => {
                    let end = rest.find('\n').unwrap_or(rest.len());
                    self.check_text(self.pos, &rest[..end])?;
                    self.pos += end;
                }
                Some('/') if rest.starts_with("/*") => {
                    let Some(end) = rest[2..].find("*/") else {
                        return Err(err(self.pos, RuleErrorKind::UnterminatedComment));
                    };
                    self.check_text(self.pos, &rest[..end + 4])?;
                    self.pos += end + 4;
                }
                _ => return Ok(()),
            }
        }
    }

    fn check_text(&self, start: usize, text: &str) -> Result<(), RuleError> {
        for (i, c) in text.char_indices() {
            check_illegal(c, start + i)?;
        }
        Ok(())
    }

    /// Go's scanner after a name, a string or `)`: is the rest of this line blank (comments
    /// included), so that a semicolon is inserted? Does not move the position.
    fn semicolon_follows(&self) -> Result<bool, RuleError> {
        let mut rest = &self.src[self.pos..];
        loop {
            rest = rest.trim_start_matches([' ', '\t', '\r']);
            if rest.is_empty() || rest.starts_with('\n') || rest.starts_with("//") {
                return Ok(true);
            }
            if let Some(body) = rest.strip_prefix("/*") {
                let Some(end) = body.find("*/") else {
                    // Unterminated: the scanner reports it when it gets there.
                    return Ok(true);
                };
                if body[..end].contains('\n') {
                    return Ok(true);
                }
                rest = &body[end + 2..];
                continue;
            }
            return Ok(false);
        }
    }

    fn raw_string(&mut self) -> Result<String, RuleError> {
        let start = self.pos;
        let body = &self.src[start + 1..];
        let Some(end) = body.find('`') else {
            return Err(err(start, RuleErrorKind::UnterminatedString));
        };
        self.check_text(start + 1, &body[..end])?;
        self.pos = start + 1 + end + 1;
        Ok(body[..end].replace('\r', ""))
    }

    fn interpreted_string(&mut self) -> Result<String, RuleError> {
        let start = self.pos;
        let mut bytes: Vec<u8> = Vec::new();
        let mut i = start + 1;
        loop {
            let Some(c) = self.src[i..].chars().next() else {
                return Err(err(start, RuleErrorKind::UnterminatedString));
            };
            match c {
                '"' => {
                    i += 1;
                    break;
                }
                '\n' => return Err(err(start, RuleErrorKind::UnterminatedString)),
                '\\' => {
                    let (len, decoded) = escape(&self.src[i..]).ok_or_else(|| {
                        let text: String = self.src[i..].chars().take(2).collect();
                        err(i, RuleErrorKind::InvalidEscape { escape: text })
                    })?;
                    match decoded {
                        Decoded::Byte(b) => bytes.push(b),
                        Decoded::Char(c) => bytes.extend_from_slice(c.encode_utf8(&mut [0; 4]).as_bytes()),
                    }
                    i += len;
                }
                c => {
                    check_illegal(c, i)?;
                    bytes.extend_from_slice(c.encode_utf8(&mut [0; 4]).as_bytes());
                    i += c.len_utf8();
                }
            }
        }
        self.pos = i;
        String::from_utf8(bytes).map_err(|_| err(start, RuleErrorKind::NotUtf8))
    }
}

enum Decoded {
    Byte(u8),
    Char(char),
}

/// One escape of a Go interpreted string literal at the start of `s` (which starts with `\`):
/// its length and what it stands for. `None`: Go's scanner rejects it.
fn escape(s: &str) -> Option<(usize, Decoded)> {
    let b = s.as_bytes();
    let simple = |c: u8| Some((2, Decoded::Byte(c)));
    match *b.get(1)? {
        b'a' => simple(0x07),
        b'b' => simple(0x08),
        b'f' => simple(0x0C),
        b'n' => simple(b'\n'),
        b'r' => simple(b'\r'),
        b't' => simple(b'\t'),
        b'v' => simple(0x0B),
        b'\\' => simple(b'\\'),
        b'"' => simple(b'"'),
        b'0'..=b'7' => {
            let digits = b.get(1..4)?;
            if !digits.iter().all(|d| (b'0'..=b'7').contains(d)) {
                return None;
            }
            let value = digits.iter().fold(0u32, |n, d| n * 8 + u32::from(d - b'0'));
            Some((4, Decoded::Byte(u8::try_from(value).ok()?)))
        }
        b'x' => {
            let digits = s.get(2..4)?;
            Some((
                4,
                Decoded::Byte(u8::from_str_radix(digits, 16).ok().filter(|_| is_hex(digits))?),
            ))
        }
        b'u' => {
            let digits = s.get(2..6)?;
            let value = u32::from_str_radix(digits, 16).ok().filter(|_| is_hex(digits))?;
            Some((6, Decoded::Char(char::from_u32(value)?)))
        }
        b'U' => {
            let digits = s.get(2..10)?;
            let value = u32::from_str_radix(digits, 16).ok().filter(|_| is_hex(digits))?;
            Some((10, Decoded::Char(char::from_u32(value)?)))
        }
        _ => None,
    }
}

fn is_hex(s: &str) -> bool {
    s.bytes().all(|b| b.is_ascii_hexdigit())
}

// ----------------------------------------------------------------------------------------------
// Expressions

struct Parser<'t> {
    tokens: &'t [Token],
    next: usize,
    depth: usize,
    rule_len: usize,
}

impl Parser<'_> {
    fn peek(&self) -> Token {
        self.tokens.get(self.next).cloned().unwrap_or(Token {
            kind: Kind::Eof,
            start: self.rule_len,
            at_end: true,
        })
    }

    fn advance(&mut self) -> Token {
        let token = self.peek();
        if self.next < self.tokens.len() {
            self.next += 1;
        }
        token
    }

    fn unexpected(token: &Token, expected: &'static str) -> RuleError {
        let kind = match token.kind {
            // Go ends a rule that stops after a matcher, a string or `)` with an implicit
            // semicolon; at the very end of the rule it means the rule stopped too early.
            Kind::Semicolon if token.at_end => RuleErrorKind::Unexpected {
                found: "the end of the rule".into(),
                expected,
            },
            Kind::Semicolon => RuleErrorKind::UnexpectedNewline,
            Kind::Eof if expected == "a matcher" => RuleErrorKind::EmptyOperand,
            _ => RuleErrorKind::Unexpected {
                found: token.describe(),
                expected,
            },
        };
        RuleError {
            position: token.start,
            kind,
        }
    }

    fn enter(&mut self, position: usize) -> Result<(), RuleError> {
        self.depth += 1;
        if self.depth > MAX_NESTING {
            return Err(RuleError {
                position,
                kind: RuleErrorKind::TooDeep { limit: MAX_NESTING },
            });
        }
        Ok(())
    }

    fn or_expr(&mut self) -> Result<Expr, RuleError> {
        let first = self.and_expr()?;
        let mut operands = vec![first];
        while self.peek().kind == Kind::OrOr {
            self.advance();
            operands.push(self.and_expr()?);
        }
        Ok(if operands.len() == 1 {
            operands.remove(0)
        } else {
            Expr::Or(operands)
        })
    }

    fn and_expr(&mut self) -> Result<Expr, RuleError> {
        let first = self.unary()?;
        let mut operands = vec![first];
        while self.peek().kind == Kind::AndAnd {
            self.advance();
            operands.push(self.unary()?);
        }
        Ok(if operands.len() == 1 {
            operands.remove(0)
        } else {
            Expr::And(operands)
        })
    }

    fn unary(&mut self) -> Result<Expr, RuleError> {
        let token = self.advance();
        match token.kind {
            Kind::Bang => {
                self.enter(token.start)?;
                let operand = self.unary()?;
                self.depth -= 1;
                Ok(Expr::Not {
                    operand: Box::new(operand),
                    position: token.start,
                })
            }
            Kind::LParen => {
                self.enter(token.start)?;
                let inner = self.or_expr()?;
                self.depth -= 1;
                let close = self.advance();
                if close.kind != Kind::RParen {
                    return Err(Self::unexpected(&close, "`)`"));
                }
                self.no_call_follows()?;
                Ok(inner)
            }
            Kind::Ident(name) => {
                let open = self.advance();
                if open.kind != Kind::LParen {
                    return Err(RuleError {
                        position: token.start,
                        kind: RuleErrorKind::NotACall { name },
                    });
                }
                let args = self.arguments(&name)?;
                self.no_call_follows()?;
                Ok(Expr::Call(Call {
                    name,
                    position: token.start,
                    args,
                }))
            }
            Kind::Str(_) => Err(RuleError {
                position: token.start,
                kind: RuleErrorKind::StringNotMatcher,
            }),
            _ => Err(Self::unexpected(&token, "a matcher")),
        }
    }

    /// `f(...)(...)`: Go parses a call of a call, which Traefik rejects.
    fn no_call_follows(&self) -> Result<(), RuleError> {
        let token = self.peek();
        if token.kind == Kind::LParen {
            return Err(Self::unexpected(&token, "&&, || or `)`"));
        }
        Ok(())
    }

    /// The arguments after `(`, up to and including `)`.
    fn arguments(&mut self, matcher: &str) -> Result<Vec<Arg>, RuleError> {
        let mut args = Vec::new();
        loop {
            let token = self.advance();
            match token.kind {
                Kind::RParen => return Ok(args),
                Kind::Str(value) => args.push(Arg {
                    value,
                    position: token.start,
                }),
                Kind::Ident(_) | Kind::LParen | Kind::Bang => {
                    return Err(RuleError {
                        position: token.start,
                        kind: RuleErrorKind::ArgumentNotString {
                            matcher: matcher.to_string(),
                        },
                    });
                }
                _ => return Err(Self::unexpected(&token, "a quoted string or `)`")),
            }
            let mut after = self.advance();
            if after.kind == Kind::Ellipsis {
                after = self.advance();
                if after.kind == Kind::Comma {
                    after = self.advance();
                }
                if after.kind != Kind::RParen {
                    return Err(Self::unexpected(&after, "`)`"));
                }
                return Ok(args);
            }
            match after.kind {
                Kind::Comma => continue,
                Kind::RParen => return Ok(args),
                _ => return Err(Self::unexpected(&after, "`,` or `)`")),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(name: &str, position: usize, args: &[(&str, usize)]) -> Expr {
        Expr::Call(Call {
            name: name.into(),
            position,
            args: args
                .iter()
                .map(|(v, p)| Arg {
                    value: (*v).into(),
                    position: *p,
                })
                .collect(),
        })
    }

    fn ok(rule: &str) -> Expr {
        match parse(rule) {
            Ok(e) => e,
            Err(e) => panic!("{rule:?} should parse: {e}"),
        }
    }

    fn fails(rule: &str) -> RuleError {
        match parse(rule) {
            Ok(e) => panic!("{rule:?} should not parse, got {e:?}"),
            Err(e) => e,
        }
    }

    #[test]
    fn precedence_and_grouping() {
        let a = || call("a", 0, &[]);
        assert_eq!(ok("a()"), a());
        assert!(
            matches!(ok("a() || b() && c()"), Expr::Or(v) if matches!(&v[1], Expr::And(w) if w.len() == 2))
        );
        assert!(matches!(ok("(a() || b()) && c()"), Expr::And(v) if matches!(&v[0], Expr::Or(_))));
        assert!(matches!(ok("a() && (b() && c())"), Expr::And(v) if v.len() == 2));
        assert!(matches!(ok("a() && b() && c()"), Expr::And(v) if v.len() == 3));
        assert!(matches!(ok("!a() && b()"), Expr::And(v) if matches!(v[0], Expr::Not { .. })));
        assert_eq!(ok("((a()))"), call("a", 2, &[]));
    }

    #[test]
    fn strings() {
        assert_eq!(ok("m(`1`, \"2\")"), call("m", 0, &[("1", 2), ("2", 7)]));
        assert_eq!(
            ok(r#"m("a\tb\x41\101\u263a\U0001F600\"\\")"#),
            call("m", 0, &[("a\tbAA☺😀\"\\", 2)])
        );
        assert_eq!(ok("m(`a\r\nb\\n`)"), call("m", 0, &[("a\nb\\n", 2)]));
        assert_eq!(
            fails(r#"m("\'")"#).kind,
            RuleErrorKind::InvalidEscape { escape: "\\'".into() }
        );
        assert_eq!(fails(r#"m("\xff")"#).kind, RuleErrorKind::NotUtf8);
        assert!(matches!(
            fails(r#"m("\400")"#).kind,
            RuleErrorKind::InvalidEscape { .. }
        ));
        assert!(matches!(
            fails(r#"m("\ud800")"#).kind,
            RuleErrorKind::InvalidEscape { .. }
        ));
        assert!(matches!(
            fails(r#"m("\x4")"#).kind,
            RuleErrorKind::InvalidEscape { .. }
        ));
        assert_eq!(fails("m(\"a\nb\")").kind, RuleErrorKind::UnterminatedString);
        assert_eq!(fails("m(`1)").kind, RuleErrorKind::UnterminatedString);
        assert_eq!(fails("m('a')").kind, RuleErrorKind::SingleQuote);
        assert_eq!(
            fails("m(`\0`)").kind,
            RuleErrorKind::IllegalCharacter { character: '\0' }
        );
    }

    #[test]
    fn go_call_syntax() {
        assert_eq!(ok("m(`a`,)"), call("m", 0, &[("a", 2)]));
        assert_eq!(ok("m(`a`...)"), call("m", 0, &[("a", 2)]));
        assert_eq!(ok("m(`a`...,)"), call("m", 0, &[("a", 2)]));
        assert_eq!(ok("m ( `a` )"), call("m", 0, &[("a", 4)]));
        fails("m(`a`...,`b`)");
        fails("m(...)");
        fails("m(,)");
        fails("m(`a`,,`b`)");
        fails("m(`a`)(`b`)");
        fails("(m(`a`))(`b`)");
        assert!(matches!(
            fails("m(n)").kind,
            RuleErrorKind::ArgumentNotString { .. }
        ));
        assert!(matches!(
            fails("m(1)").kind,
            RuleErrorKind::UnexpectedCharacter { .. }
        ));
        assert!(matches!(fails("m").kind, RuleErrorKind::NotACall { .. }));
        assert!(matches!(fails("`m`").kind, RuleErrorKind::StringNotMatcher));
    }

    #[test]
    fn newlines_and_comments_as_go_reads_them() {
        assert!(parse("m(`a`) &&\n n(`b`)").is_ok());
        assert!(parse("m(\n`a`,\n)").is_ok());
        assert!(parse("m(`a`)\n").is_ok());
        assert!(parse("m(`a`) // c").is_ok());
        assert!(parse("m(`a`) /* c */ && n(`b`)").is_ok());
        assert!(parse("\u{FEFF}m(`a`)").is_ok());
        assert_eq!(fails("m(`a`)\n&& n(`b`)").kind, RuleErrorKind::UnexpectedNewline);
        // An unclosed parenthesis at the very end is the rule ending early, not a line break.
        let unclosed = fails("m(`a`) && (n(`b`)");
        assert_eq!(unclosed.position, "m(`a`) && (n(`b`)".len());
        assert!(
            unclosed.to_string().contains("found the end of the rule"),
            "{unclosed}"
        );
        assert_eq!(
            fails("m(`a`) /* \n */ && n(`b`)").kind,
            RuleErrorKind::UnexpectedNewline
        );
        assert_eq!(fails("m(`a`\n)").kind, RuleErrorKind::UnexpectedNewline);
        assert_eq!(
            fails("m\n(`a`)").kind,
            RuleErrorKind::NotACall { name: "m".into() }
        );
        assert_eq!(fails("m(`a`) /* x").kind, RuleErrorKind::UnterminatedComment);
        assert!(matches!(
            fails("m(`a`)\u{FEFF}").kind,
            RuleErrorKind::IllegalCharacter { .. }
        ));
        assert!(matches!(
            fails("m(`a`);").kind,
            RuleErrorKind::UnexpectedCharacter { character: ';' }
        ));
    }

    #[test]
    fn operators_go_would_parse_are_rejected() {
        for rule in [
            "m() & n()",
            "m() | n()",
            "m() != n()",
            "m() == n()",
            "-m()",
            "m() + n()",
            "a.m()",
        ] {
            assert!(parse(rule).is_err(), "{rule:?}");
        }
    }

    #[test]
    fn errors_point_into_the_rule() {
        assert_eq!(fails("").position, 0);
        assert_eq!(fails("   ").kind, RuleErrorKind::EmptyOperand);
        assert_eq!(fails("m(`1`) &&").position, 9);
        assert_eq!(fails("m(`1`))").position, 6);
        assert_eq!(fails("(m(`1`)").position, 7);
    }

    #[test]
    fn nesting_is_bounded() {
        let deep = format!(
            "{}m(){}",
            "(".repeat(MAX_NESTING + 1),
            ")".repeat(MAX_NESTING + 1)
        );
        assert!(matches!(fails(&deep).kind, RuleErrorKind::TooDeep { .. }));
        let nots = format!("{}m()", "!".repeat(MAX_NESTING + 1));
        assert!(matches!(fails(&nots).kind, RuleErrorKind::TooDeep { .. }));
        assert!(parse(&format!("{}m(){}", "(".repeat(50), ")".repeat(50))).is_ok());
    }
}
