//! The circuit breaker's expression language, as Traefik's `circuitBreaker` middleware reads it
//! (vulcand/oxy's `cbreaker` over vulcand/predicate): parsed once into an [`Expression`] by the
//! control plane (to reject a bad tag) and by the proxy (to run it), evaluated against whatever
//! [`Metrics`] the proxy keeps.
//!
//! The language, as oxy accepts it:
//! - four metrics: `NetworkErrorRatio()` and `ResponseCodeRatio(from, to, dividedFrom,
//!   dividedTo)` (ratios, compared with a decimal number such as `0.5`),
//!   `LatencyAtQuantileMS(q)` (`q` a decimal number such as `50.0`; whole milliseconds) and
//!   `RequestThreshold()` (the requests in the window), both compared with a whole number;
//! - a comparison (`>`, `>=`, `<`, `<=`, `==`, `!=`) puts the metric on the left and a literal on
//!   the right; comparisons join with `&&` and `||` (`&&` binds tighter) and group with
//!   parentheses. Numbers are written in decimal and are never negative; there is no `!`.
//!
//! Errors name the column (1-based, in characters) and what was expected there.
//! Not for: keeping the metrics or the breaker's state (the proxy's `circuit_breaker`
//! middleware does).

use std::fmt;

/// What the expression reads: the metrics of the breaker's window.
pub trait Metrics {
    /// Requests answered 502 or 504 (the proxy's own answers for an unreachable or slow backend,
    /// or the backend's) over all requests; 0 with no requests.
    fn network_error_ratio(&self) -> f64;
    /// Requests with a status in `[from, to)` over requests with a status in
    /// `[divided_from, divided_to)`; 0 when the latter is 0.
    fn response_code_ratio(&self, from: u32, to: u32, divided_from: u32, divided_to: u32) -> f64;
    /// The latency at `quantile` percent (50.0: the median), in whole milliseconds.
    fn latency_at_quantile_ms(&self, quantile: f64) -> i64;
    /// The requests in the window.
    fn request_count(&self) -> i64;
}

/// A parsed, type-checked circuit-breaker expression.
#[derive(Debug, Clone, PartialEq)]
pub struct Expression {
    root: Condition,
}

/// A condition: comparisons joined by `&&` and `||`.
#[derive(Debug, Clone, PartialEq)]
pub enum Condition {
    /// Both hold.
    And(Box<Condition>, Box<Condition>),
    /// Either holds.
    Or(Box<Condition>, Box<Condition>),
    /// A metric compared with a literal.
    Compare(Comparison),
}

/// `metric op threshold`.
#[derive(Debug, Clone, PartialEq)]
pub struct Comparison {
    /// The left side.
    pub metric: Metric,
    /// The comparison.
    pub op: CompareOp,
    /// The right side: a float for the ratios, a whole number for latency and request counts.
    pub threshold: Threshold,
}

/// One of the metrics oxy offers.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Metric {
    /// `NetworkErrorRatio()`.
    NetworkErrorRatio,
    /// `ResponseCodeRatio(from, to, divided_from, divided_to)`.
    ResponseCodeRatio {
        /// First status counted (inclusive).
        from: u32,
        /// End of the statuses counted (exclusive).
        to: u32,
        /// First status of the divisor (inclusive).
        divided_from: u32,
        /// End of the divisor's statuses (exclusive).
        divided_to: u32,
    },
    /// `LatencyAtQuantileMS(quantile)`.
    LatencyAtQuantileMs(f64),
    /// `RequestThreshold()`.
    RequestThreshold,
}

/// A comparison operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CompareOp {
    /// `>`
    Gt,
    /// `>=`
    Ge,
    /// `<`
    Lt,
    /// `<=`
    Le,
    /// `==`
    Eq,
    /// `!=`
    Ne,
}

/// The literal a metric is compared with.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Threshold {
    /// For `LatencyAtQuantileMS` and `RequestThreshold`.
    Int(i64),
    /// For the ratios.
    Float(f64),
}

/// Why an expression was refused, and where.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("at column {column}: {message}")]
pub struct ExpressionError {
    /// 1-based, in characters; one past the end for "the expression ends too early".
    pub column: usize,
    /// What was expected there, or what is wrong with what is there.
    pub message: String,
}

impl Expression {
    /// Parses and type-checks `text` as oxy would.
    pub fn parse(text: &str) -> Result<Self, ExpressionError> {
        let tokens = lex(text)?;
        let mut parser = Parser {
            tokens: &tokens,
            at: 0,
            end: text.chars().count() + 1,
        };
        let tree = parser.or()?;
        if let Some(token) = parser.peek() {
            return Err(error(
                token.column,
                format!(
                    "expected \"&&\", \"||\" or the end of the expression, found {}",
                    token.kind
                ),
            ));
        }
        Ok(Self {
            root: condition(&tree)?,
        })
    }

    /// Whether the condition holds for `metrics`.
    pub fn holds(&self, metrics: &impl Metrics) -> bool {
        self.root.holds(metrics)
    }

    /// The top of the tree.
    pub fn condition(&self) -> &Condition {
        &self.root
    }

    /// Every metric the expression reads, in order of appearance.
    pub fn metrics(&self) -> Vec<Metric> {
        let mut out = Vec::new();
        self.root.collect(&mut out);
        out
    }
}

impl Condition {
    fn holds(&self, metrics: &impl Metrics) -> bool {
        match self {
            Self::And(a, b) => a.holds(metrics) && b.holds(metrics),
            Self::Or(a, b) => a.holds(metrics) || b.holds(metrics),
            Self::Compare(c) => c.holds(metrics),
        }
    }

    fn collect(&self, out: &mut Vec<Metric>) {
        match self {
            Self::And(a, b) | Self::Or(a, b) => {
                a.collect(out);
                b.collect(out);
            }
            Self::Compare(c) => out.push(c.metric),
        }
    }
}

impl Comparison {
    fn holds(&self, metrics: &impl Metrics) -> bool {
        match (self.metric, self.threshold) {
            (Metric::NetworkErrorRatio, Threshold::Float(t)) => {
                self.op.apply(metrics.network_error_ratio(), t)
            }
            (
                Metric::ResponseCodeRatio {
                    from,
                    to,
                    divided_from,
                    divided_to,
                },
                Threshold::Float(t),
            ) => self
                .op
                .apply(metrics.response_code_ratio(from, to, divided_from, divided_to), t),
            (Metric::LatencyAtQuantileMs(q), Threshold::Int(t)) => {
                self.op.apply(metrics.latency_at_quantile_ms(q), t)
            }
            (Metric::RequestThreshold, Threshold::Int(t)) => self.op.apply(metrics.request_count(), t),
            // The parser pairs each metric with its type only.
            _ => false,
        }
    }
}

impl CompareOp {
    /// `v <op> t`, for the metric's type (an integer or a float).
    fn apply<T: PartialOrd>(self, v: T, t: T) -> bool {
        match self {
            Self::Gt => v > t,
            Self::Ge => v >= t,
            Self::Lt => v < t,
            Self::Le => v <= t,
            Self::Eq => v == t,
            Self::Ne => v != t,
        }
    }

    fn text(self) -> &'static str {
        match self {
            Self::Gt => ">",
            Self::Ge => ">=",
            Self::Lt => "<",
            Self::Le => "<=",
            Self::Eq => "==",
            Self::Ne => "!=",
        }
    }
}

impl fmt::Display for Expression {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.root.fmt(f)
    }
}

impl Condition {
    fn fmt_grouped(&self, f: &mut fmt::Formatter<'_>, grouped: bool) -> fmt::Result {
        if grouped {
            write!(f, "({self})")
        } else {
            write!(f, "{self}")
        }
    }
}

impl fmt::Display for Condition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Or(a, b) => {
                write!(f, "{a} || ")?;
                b.fmt_grouped(f, matches!(**b, Self::Or(..)))
            }
            Self::And(a, b) => {
                a.fmt_grouped(f, matches!(**a, Self::Or(..)))?;
                f.write_str(" && ")?;
                b.fmt_grouped(f, !matches!(**b, Self::Compare(_)))
            }
            Self::Compare(c) => {
                match c.metric {
                    Metric::NetworkErrorRatio => f.write_str("NetworkErrorRatio()")?,
                    Metric::ResponseCodeRatio {
                        from,
                        to,
                        divided_from,
                        divided_to,
                    } => write!(f, "ResponseCodeRatio({from}, {to}, {divided_from}, {divided_to})")?,
                    Metric::LatencyAtQuantileMs(q) => write!(f, "LatencyAtQuantileMS({q:?})")?,
                    Metric::RequestThreshold => f.write_str("RequestThreshold()")?,
                }
                write!(f, " {} ", c.op.text())?;
                match c.threshold {
                    Threshold::Int(i) => write!(f, "{i}"),
                    Threshold::Float(x) => write!(f, "{x:?}"),
                }
            }
        }
    }
}

fn error(column: usize, message: impl Into<String>) -> ExpressionError {
    ExpressionError {
        column,
        message: message.into(),
    }
}

// ---- lexing ----

#[derive(Debug, Clone, PartialEq)]
enum TokenKind {
    Ident(String),
    Int(String),
    Float(String),
    Open,
    Close,
    Comma,
    And,
    Or,
    Cmp(CompareOp),
}

impl fmt::Display for TokenKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Ident(s) => write!(f, "{s:?}"),
            Self::Int(s) | Self::Float(s) => write!(f, "number {s}"),
            Self::Open => f.write_str("\"(\""),
            Self::Close => f.write_str("\")\""),
            Self::Comma => f.write_str("\",\""),
            Self::And => f.write_str("\"&&\""),
            Self::Or => f.write_str("\"||\""),
            Self::Cmp(op) => write!(f, "\"{}\"", op.text()),
        }
    }
}

#[derive(Debug, Clone)]
struct Token {
    kind: TokenKind,
    column: usize,
}

fn lex(text: &str) -> Result<Vec<Token>, ExpressionError> {
    let chars: Vec<char> = text.chars().collect();
    let mut tokens = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let column = i + 1;
        let next = chars.get(i + 1).copied();
        let (kind, len) = match c {
            ' ' | '\t' | '\n' | '\r' => {
                i += 1;
                continue;
            }
            '(' => (TokenKind::Open, 1),
            ')' => (TokenKind::Close, 1),
            ',' => (TokenKind::Comma, 1),
            '&' if next == Some('&') => (TokenKind::And, 2),
            '|' if next == Some('|') => (TokenKind::Or, 2),
            '>' if next == Some('=') => (TokenKind::Cmp(CompareOp::Ge), 2),
            '>' => (TokenKind::Cmp(CompareOp::Gt), 1),
            '<' if next == Some('=') => (TokenKind::Cmp(CompareOp::Le), 2),
            '<' => (TokenKind::Cmp(CompareOp::Lt), 1),
            '=' if next == Some('=') => (TokenKind::Cmp(CompareOp::Eq), 2),
            '!' if next == Some('=') => (TokenKind::Cmp(CompareOp::Ne), 2),
            '!' => return Err(error(column, "\"!\" is not supported (write the opposite comparison)")),
            '-' => return Err(error(column, "negative numbers and \"-\" are not supported")),
            '=' => return Err(error(column, "expected \"==\", found a single \"=\"")),
            '&' => return Err(error(column, "expected \"&&\", found a single \"&\"")),
            '|' => return Err(error(column, "expected \"||\", found a single \"|\"")),
            c if c.is_alphabetic() || c == '_' => {
                let len = chars[i..]
                    .iter()
                    .take_while(|c| c.is_alphanumeric() || **c == '_')
                    .count();
                (TokenKind::Ident(chars[i..i + len].iter().collect()), len)
            }
            c if c.is_ascii_digit() || (c == '.' && next.is_some_and(|n| n.is_ascii_digit())) => {
                number(&chars[i..], column)?
            }
            other => {
                return Err(error(
                    column,
                    format!("unexpected character {other:?}: expected a metric, a number, an operator or a parenthesis"),
                ))
            }
        };
        tokens.push(Token { kind, column });
        i += len;
    }
    Ok(tokens)
}

/// A decimal number at the start of `chars`: digits, an optional fraction, an optional exponent.
fn number(chars: &[char], column: usize) -> Result<(TokenKind, usize), ExpressionError> {
    let digits = |from: usize| chars[from..].iter().take_while(|c| c.is_ascii_digit()).count();
    let mut len = digits(0);
    let mut float = false;
    if chars.get(len) == Some(&'.') {
        float = true;
        len += 1;
        len += digits(len);
    }
    if matches!(chars.get(len), Some('e' | 'E')) {
        let mut at = len + 1;
        if matches!(chars.get(at), Some('+' | '-')) {
            at += 1;
        }
        let exponent = digits(at);
        if exponent == 0 {
            return Err(error(column + at, "expected the digits of the exponent"));
        }
        float = true;
        len = at + exponent;
    }
    if let Some(c) = chars
        .get(len)
        .filter(|c| c.is_alphanumeric() || **c == '_' || **c == '.')
    {
        return Err(error(
            column + len,
            format!("unexpected {c:?} in a number (numbers are written in decimal, as 0.5 or 100)"),
        ));
    }
    let text: String = chars[..len].iter().collect();
    Ok((
        if float {
            TokenKind::Float(text)
        } else {
            TokenKind::Int(text)
        },
        len,
    ))
}

// ---- parsing (untyped, Go's precedence) ----

#[derive(Debug)]
enum Tree {
    Join {
        and: bool,
        left: Box<Tree>,
        right: Box<Tree>,
    },
    Compare {
        op: CompareOp,
        left: Box<Tree>,
        right: Box<Tree>,
        column: usize,
    },
    Paren(Box<Tree>, usize),
    Call {
        name: String,
        args: Vec<Tree>,
        column: usize,
    },
    Int(String, usize),
    Float(String, usize),
}

impl Tree {
    fn column(&self) -> usize {
        match self {
            Self::Join { left, .. } | Self::Compare { left, .. } => left.column(),
            Self::Paren(_, c) | Self::Call { column: c, .. } | Self::Int(_, c) | Self::Float(_, c) => *c,
        }
    }

    /// Parentheses removed.
    fn bare(&self) -> &Tree {
        match self {
            Self::Paren(inner, _) => inner.bare(),
            other => other,
        }
    }
}

struct Parser<'t> {
    tokens: &'t [Token],
    at: usize,
    /// The column just past the text.
    end: usize,
}

/// How deep parentheses may nest (no stack overflow on hostile input).
const MAX_DEPTH: usize = 64;

impl Parser<'_> {
    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.at)
    }

    fn found(&self) -> (usize, String) {
        match self.peek() {
            Some(t) => (t.column, t.kind.to_string()),
            None => (self.end, "the end of the expression".to_owned()),
        }
    }

    fn expected(&self, what: &str) -> ExpressionError {
        let (column, found) = self.found();
        error(column, format!("expected {what}, found {found}"))
    }

    fn or(&mut self) -> Result<Tree, ExpressionError> {
        self.or_at(0)
    }

    fn or_at(&mut self, depth: usize) -> Result<Tree, ExpressionError> {
        self.joined(depth, false, Self::and)
    }

    fn and(&mut self, depth: usize) -> Result<Tree, ExpressionError> {
        self.joined(depth, true, Self::compare)
    }

    /// Operands read by `operand`, joined left to right by `&&` (`and`) or `||` (not `and`).
    fn joined(
        &mut self,
        depth: usize,
        and: bool,
        operand: fn(&mut Self, usize) -> Result<Tree, ExpressionError>,
    ) -> Result<Tree, ExpressionError> {
        let mut left = operand(self, depth)?;
        while self.peek().is_some_and(|t| match t.kind {
            TokenKind::And => and,
            TokenKind::Or => !and,
            _ => false,
        }) {
            self.at += 1;
            let right = operand(self, depth)?;
            left = Tree::Join {
                and,
                left: Box::new(left),
                right: Box::new(right),
            };
        }
        Ok(left)
    }

    fn compare(&mut self, depth: usize) -> Result<Tree, ExpressionError> {
        let left = self.operand(depth)?;
        let Some(Token {
            kind: TokenKind::Cmp(op),
            column,
        }) = self.peek().cloned()
        else {
            return Ok(left);
        };
        self.at += 1;
        let right = self.operand(depth)?;
        if let Some(Token {
            kind: TokenKind::Cmp(_),
            column,
        }) = self.peek()
        {
            return Err(error(
                *column,
                "a comparison cannot be compared again: join comparisons with \"&&\" or \"||\"",
            ));
        }
        Ok(Tree::Compare {
            op,
            left: Box::new(left),
            right: Box::new(right),
            column,
        })
    }

    fn operand(&mut self, depth: usize) -> Result<Tree, ExpressionError> {
        let Some(token) = self.peek().cloned() else {
            return Err(self.expected("a metric such as NetworkErrorRatio(), a number or \"(\""));
        };
        match token.kind {
            TokenKind::Open => {
                if depth >= MAX_DEPTH {
                    return Err(error(token.column, "parentheses nest too deep"));
                }
                self.at += 1;
                let inner = self.or_at(depth + 1)?;
                match self.peek() {
                    Some(Token {
                        kind: TokenKind::Close,
                        ..
                    }) => {
                        self.at += 1;
                        Ok(Tree::Paren(Box::new(inner), token.column))
                    }
                    _ => Err(self.expected(&format!("\")\" closing the \"(\" at column {}", token.column))),
                }
            }
            TokenKind::Int(text) => {
                self.at += 1;
                Ok(Tree::Int(text, token.column))
            }
            TokenKind::Float(text) => {
                self.at += 1;
                Ok(Tree::Float(text, token.column))
            }
            TokenKind::Ident(name) => {
                self.at += 1;
                if !matches!(
                    self.peek(),
                    Some(Token {
                        kind: TokenKind::Open,
                        ..
                    })
                ) {
                    return Err(error(
                        token.column,
                        format!(
                            "{name:?} is not defined: expected a metric call such as NetworkErrorRatio()"
                        ),
                    ));
                }
                self.at += 1;
                let mut args = Vec::new();
                loop {
                    if let Some(Token {
                        kind: TokenKind::Close,
                        ..
                    }) = self.peek()
                    {
                        self.at += 1;
                        break;
                    }
                    args.push(self.operand(depth + 1)?);
                    match self.peek().map(|t| &t.kind) {
                        Some(TokenKind::Comma) => self.at += 1,
                        Some(TokenKind::Close) => {}
                        _ => return Err(self.expected(&format!("\",\" or \")\" in the call of {name}"))),
                    }
                    if depth + args.len() > MAX_DEPTH * 4 {
                        return Err(error(token.column, "too many arguments"));
                    }
                }
                Ok(Tree::Call {
                    name,
                    args,
                    column: token.column,
                })
            }
            other => Err(error(
                token.column,
                format!("expected a metric such as NetworkErrorRatio(), a number or \"(\", found {other}"),
            )),
        }
    }
}

// ---- type checking (as oxy's operators and functions accept their arguments) ----

const EXAMPLE: &str = "a comparison such as NetworkErrorRatio() > 0.5";

fn condition(tree: &Tree) -> Result<Condition, ExpressionError> {
    match tree {
        Tree::Paren(inner, _) => condition(inner),
        Tree::Join { and, left, right, .. } => {
            let (l, r) = (Box::new(condition(left)?), Box::new(condition(right)?));
            Ok(if *and {
                Condition::And(l, r)
            } else {
                Condition::Or(l, r)
            })
        }
        Tree::Compare {
            op,
            left,
            right,
            column,
        } => {
            let metric = match left.bare() {
                Tree::Call { .. } => metric(left.bare())?,
                other => {
                    return Err(error(
                        other.column(),
                        format!("expected a metric on the left of \"{}\"", op.text()),
                    ))
                }
            };
            let threshold = threshold(&metric, right, *column, *op)?;
            Ok(Condition::Compare(Comparison {
                metric,
                op: *op,
                threshold,
            }))
        }
        other => Err(error(other.column(), format!("expected {EXAMPLE}"))),
    }
}

fn metric(tree: &Tree) -> Result<Metric, ExpressionError> {
    let Tree::Call { name, args, column } = tree else {
        return Err(error(tree.column(), "expected a metric"));
    };
    let arity = |n: usize| {
        if args.len() == n {
            Ok(())
        } else {
            Err(error(
                *column,
                format!(
                    "{name} takes {n} argument{}, found {}",
                    if n == 1 { "" } else { "s" },
                    args.len()
                ),
            ))
        }
    };
    match name.as_str() {
        "NetworkErrorRatio" => arity(0).map(|()| Metric::NetworkErrorRatio),
        "RequestThreshold" => arity(0).map(|()| Metric::RequestThreshold),
        "LatencyAtQuantileMS" => {
            arity(1)?;
            match &args[0] {
                Tree::Float(text, c) => Ok(Metric::LatencyAtQuantileMs(float(text, *c)?)),
                Tree::Int(text, c) => Err(error(
                    *c,
                    format!("expected a decimal number as the quantile (write {text}.0), found {text}"),
                )),
                other => Err(error(
                    other.column(),
                    "expected a number as the quantile, such as 50.0",
                )),
            }
        }
        "ResponseCodeRatio" => {
            arity(4)?;
            let mut codes = [0u32; 4];
            for (code, arg) in codes.iter_mut().zip(args) {
                *code = match arg {
                    Tree::Int(text, c) => text
                        .parse::<u32>()
                        .map_err(|_| error(*c, format!("{text} is too large for a status code")))?,
                    other => {
                        return Err(error(
                            other.column(),
                            "expected a whole number (a status code) as argument of ResponseCodeRatio",
                        ))
                    }
                };
            }
            let [from, to, divided_from, divided_to] = codes;
            Ok(Metric::ResponseCodeRatio {
                from,
                to,
                divided_from,
                divided_to,
            })
        }
        _ => Err(error(
            *column,
            format!(
                "unsupported function {name:?}: expected NetworkErrorRatio, ResponseCodeRatio, \
                 LatencyAtQuantileMS or RequestThreshold"
            ),
        )),
    }
}

fn threshold(
    metric: &Metric,
    right: &Tree,
    op_column: usize,
    op: CompareOp,
) -> Result<Threshold, ExpressionError> {
    let ratio = matches!(
        metric,
        Metric::NetworkErrorRatio | Metric::ResponseCodeRatio { .. }
    );
    match (right.bare(), ratio) {
        (Tree::Float(text, c), true) => Ok(Threshold::Float(float(text, *c)?)),
        (Tree::Int(text, c), false) => text
            .parse::<i64>()
            .map(Threshold::Int)
            .map_err(|_| error(*c, format!("{text} is too large"))),
        (Tree::Int(text, c), true) => Err(error(
            *c,
            format!("expected a decimal number to compare a ratio with (write {text}.0), found {text}"),
        )),
        (Tree::Float(text, c), false) => Err(error(
            *c,
            format!("expected a whole number to compare this metric with, found {text}"),
        )),
        (other, _) => Err(error(
            if matches!(other, Tree::Call { .. }) {
                other.column()
            } else {
                op_column
            },
            format!("expected a number on the right of \"{}\"", op.text()),
        )),
    }
}

fn float(text: &str, column: usize) -> Result<f64, ExpressionError> {
    match text.parse::<f64>() {
        Ok(v) if v.is_finite() => Ok(v),
        _ => Err(error(column, format!("{text} is out of range"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    struct Fixed {
        network: f64,
        codes: f64,
        latency: i64,
        count: i64,
    }

    impl Metrics for Fixed {
        fn network_error_ratio(&self) -> f64 {
            self.network
        }
        fn response_code_ratio(&self, _: u32, _: u32, _: u32, _: u32) -> f64 {
            self.codes
        }
        fn latency_at_quantile_ms(&self, _: f64) -> i64 {
            self.latency
        }
        fn request_count(&self) -> i64 {
            self.count
        }
    }

    fn err(text: &str) -> String {
        Expression::parse(text).expect_err(text).to_string()
    }

    #[test]
    fn traefik_documented_expressions_parse() {
        for text in [
            "NetworkErrorRatio() > 0.30",
            "ResponseCodeRatio(500, 600, 0, 600) > 0.25",
            "LatencyAtQuantileMS(50.0) > 100",
            "ResponseCodeRatio(500, 600, 0, 600) > 0.30 || NetworkErrorRatio() > 0.10",
            "ResponseCodeRatio(500, 600, 0, 600) > 0.30 && RequestThreshold() >= 20",
            "(NetworkErrorRatio()) > (0.5)",
            "NetworkErrorRatio() > .5",
            "NetworkErrorRatio() > 1e-1",
            "RequestThreshold() != 0 && (LatencyAtQuantileMS(99.9) >= 10 || NetworkErrorRatio() == 1.)",
        ] {
            let e = Expression::parse(text).unwrap_or_else(|e| panic!("{text}: {e}"));
            // What it prints parses to the same thing.
            assert_eq!(Expression::parse(&e.to_string()).unwrap(), e, "{text}");
        }
    }

    #[test]
    fn precedence_and_evaluation() {
        let e = Expression::parse(
            "NetworkErrorRatio() > 0.5 || ResponseCodeRatio(500, 600, 0, 600) > 0.25 && RequestThreshold() >= 20",
        )
        .unwrap();
        assert!(matches!(e.condition(), Condition::Or(_, b) if matches!(**b, Condition::And(..))));
        let m = |network, codes, count| Fixed {
            network,
            codes,
            latency: 0,
            count,
        };
        assert!(e.holds(&m(0.6, 0.0, 0)));
        assert!(!e.holds(&m(0.5, 0.3, 19)));
        assert!(e.holds(&m(0.0, 0.3, 20)));
        let l = Expression::parse("LatencyAtQuantileMS(50.0) > 100").unwrap();
        assert!(l.holds(&Fixed {
            network: 0.0,
            codes: 0.0,
            latency: 101,
            count: 0
        }));
        assert_eq!(l.metrics(), vec![Metric::LatencyAtQuantileMs(50.0)]);
    }

    #[test]
    fn errors_name_the_column_and_what_was_expected() {
        assert_eq!(
            err("NetworkErrorRatio() >"),
            "at column 22: expected a metric such as NetworkErrorRatio(), a number or \"(\", found the end of the expression"
        );
        assert_eq!(
            err("NetworkErrorRatio() > 1"),
            "at column 23: expected a decimal number to compare a ratio with (write 1.0), found 1"
        );
        assert_eq!(
            err("LatencyAtQuantileMS(50) > 100"),
            "at column 21: expected a decimal number as the quantile (write 50.0), found 50"
        );
        assert_eq!(
            err("LatencyAtQuantileMS(50.0) > 100.0"),
            "at column 29: expected a whole number to compare this metric with, found 100.0"
        );
        assert_eq!(
            err("NetworkErrorRatio() > 0.5 & RequestThreshold() > 1"),
            "at column 27: expected \"&&\", found a single \"&\""
        );
        assert_eq!(
            err("NetworkErrorRatio()"),
            "at column 1: expected a comparison such as NetworkErrorRatio() > 0.5"
        );
        assert_eq!(
            err("NetworkErrorRatios() > 0.5"),
            "at column 1: unsupported function \"NetworkErrorRatios\": expected NetworkErrorRatio, \
             ResponseCodeRatio, LatencyAtQuantileMS or RequestThreshold"
        );
        assert_eq!(
            err("ResponseCodeRatio(500, 600) > 0.5"),
            "at column 1: ResponseCodeRatio takes 4 arguments, found 2"
        );
        assert_eq!(err(""), "at column 1: expected a metric such as NetworkErrorRatio(), a number or \"(\", found the end of the expression");
        assert_eq!(
            err("0.5 < NetworkErrorRatio()"),
            "at column 1: expected a metric on the left of \"<\""
        );
        assert_eq!(
            err("(NetworkErrorRatio() > 0.5"),
            "at column 27: expected \")\" closing the \"(\" at column 1, found the end of the expression"
        );
        assert_eq!(
            err("NetworkErrorRatio() > 0.5 > 0.2"),
            "at column 27: a comparison cannot be compared again: join comparisons with \"&&\" or \"||\""
        );
        assert_eq!(
            err("!(NetworkErrorRatio() > 0.5)"),
            "at column 1: \"!\" is not supported (write the opposite comparison)"
        );
        assert_eq!(
            err("NetworkErrorRatio() > -0.5"),
            "at column 23: negative numbers and \"-\" are not supported"
        );
        assert_eq!(
            err("NetworkErrorRatio() > 0x10"),
            "at column 24: unexpected 'x' in a number (numbers are written in decimal, as 0.5 or 100)"
        );
        assert_eq!(
            err("NetworkErrorRatio() > 0.5 NetworkErrorRatio()"),
            "at column 27: expected \"&&\", \"||\" or the end of the expression, found \"NetworkErrorRatio\""
        );
        assert_eq!(err("NetworkErrorRatio > 0.5"), "at column 1: \"NetworkErrorRatio\" is not defined: expected a metric call such as NetworkErrorRatio()");
        assert_eq!(
            err("NetworkErrorRatio() > 0.5 && 1.0"),
            "at column 30: expected a comparison such as NetworkErrorRatio() > 0.5"
        );
        assert!(err("RequestThreshold() > 99999999999999999999").contains("too large"));
        assert!(err("NetworkErrorRatio() > 1e999").contains("out of range"));
        // Columns count characters, not bytes.
        assert_eq!(
            err("é NetworkErrorRatio() > 0.5").split(':').next().unwrap(),
            "at column 1"
        );
    }

    #[test]
    fn deep_nesting_is_refused_not_overflowed() {
        let deep = format!(
            "{}NetworkErrorRatio() > 0.5{}",
            "(".repeat(10_000),
            ")".repeat(10_000)
        );
        assert!(err(&deep).contains("nest too deep"));
        let shallow = format!("{}NetworkErrorRatio() > 0.5{}", "(".repeat(20), ")".repeat(20));
        assert!(Expression::parse(&shallow).is_ok());
    }

    fn arb_comparison() -> impl Strategy<Value = String> {
        prop_oneof![
            (0u32..10_000).prop_map(|t| format!("NetworkErrorRatio() > {}.{:04}", t / 10_000, t % 10_000)),
            (100u32..600, 100u32..600, 0u32..600, 0u32..600, 0u32..100)
                .prop_map(|(a, b, c, d, t)| format!("ResponseCodeRatio({a}, {b}, {c}, {d}) >= 0.{t}")),
            (0u32..1000, 0u32..100_000).prop_map(|(q, t)| format!(
                "LatencyAtQuantileMS({}.{}) < {t}",
                q / 10,
                q % 10
            )),
            (0i64..1000).prop_map(|t| format!("RequestThreshold() != {t}")),
        ]
    }

    fn arb_expression() -> impl Strategy<Value = String> {
        arb_comparison().prop_recursive(4, 16, 2, |inner| {
            (inner.clone(), inner, any::<bool>(), any::<bool>()).prop_map(|(a, b, and, paren)| {
                let joined = format!("{a} {} {b}", if and { "&&" } else { "||" });
                if paren {
                    format!("({joined})")
                } else {
                    joined
                }
            })
        })
    }

    proptest! {
        #[test]
        fn arbitrary_text_never_panics(text in "\\PC{0,80}") {
            if let Err(e) = Expression::parse(&text) {
                prop_assert!(e.column >= 1 && e.column <= text.chars().count() + 1, "{e} for {text:?}");
            }
        }

        #[test]
        fn near_miss_text_never_panics(text in "[A-Za-z()., 0-9<>=!&|_eE+-]{0,60}") {
            if let Err(e) = Expression::parse(&text) {
                prop_assert!(e.column >= 1 && e.column <= text.chars().count() + 1, "{e} for {text:?}");
            }
        }

        #[test]
        fn generated_expressions_parse_and_print_back(text in arb_expression()) {
            let e = Expression::parse(&text).map_err(|e| TestCaseError::fail(format!("{text}: {e}")))?;
            prop_assert_eq!(Expression::parse(&e.to_string()).unwrap(), e);
        }
    }
}
