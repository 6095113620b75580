//! The subset of SOQL the fake understands: `SELECT fields | COUNT() FROM X [WHERE ...]
//! [ORDER BY f [ASC|DESC], ...] [LIMIT n]`, with `AND`, `OR`, `NOT`, parentheses, comparison
//! operators, `IN (...)` / `NOT IN (...)`, semi-joins and anti-joins (`Id IN (SELECT AccountId FROM
//! Contact WHERE ...)`, one level, not under `OR`, as Salesforce allows them), and string, number,
//! date, datetime, boolean and `null` literals. Field names are case-insensitive, as in Salesforce.
//! <https://developer.salesforce.com/docs/atlas.en-us.soql_sosl.meta/soql_sosl/sforce_api_calls_soql_select_comparisonoperators.htm>

use std::cmp::Ordering;

use chrono::{DateTime, NaiveDate};

/// A parsed query.
#[derive(Debug, Clone, PartialEq)]
pub struct Query {
    /// `None` for `SELECT COUNT()`.
    pub fields: Option<Vec<String>>,
    pub from: String,
    pub filter: Option<Expr>,
    pub order: Vec<(String, bool)>,
    pub limit: Option<usize>,
}

/// A literal or a field's value, comparable.
#[derive(Debug, Clone, PartialEq)]
pub enum Lit {
    Null,
    Str(String),
    Num(f64),
    /// Epoch milliseconds.
    DateTime(i64),
    Bool(bool),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    Like,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    And(Box<Expr>, Box<Expr>),
    Or(Box<Expr>, Box<Expr>),
    Not(Box<Expr>),
    Cmp(String, Op, Lit),
    In(String, Vec<Lit>, bool),
    /// `field [NOT] IN (SELECT one_field FROM ...)`; the store runs the subquery and turns it into
    /// [`Expr::In`] before evaluating (see [`Expr::map_semi_joins`]).
    SemiJoin(String, Box<Query>, bool),
}

/// Why a query is rejected (Salesforce answers 400 `MALFORMED_QUERY`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct SoqlError(pub String);

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Word(String),
    Str(String),
    Sym(&'static str),
}

fn tokenize(q: &str) -> Result<Vec<Tok>, SoqlError> {
    let chars: Vec<char> = q.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c.is_whitespace() {
            i += 1;
        } else if c == '\'' {
            let mut s = String::new();
            i += 1;
            loop {
                match chars.get(i) {
                    None => return Err(SoqlError("unterminated string literal".into())),
                    Some('\\') => {
                        if let Some(n) = chars.get(i + 1) {
                            s.push(*n);
                        }
                        i += 2;
                    }
                    Some('\'') => {
                        i += 1;
                        break;
                    }
                    Some(ch) => {
                        s.push(*ch);
                        i += 1;
                    }
                }
            }
            out.push(Tok::Str(s));
        } else if "(),".contains(c) {
            out.push(Tok::Sym(match c {
                '(' => "(",
                ')' => ")",
                _ => ",",
            }));
            i += 1;
        } else if "=!<>".contains(c) {
            let two: String = chars[i..(i + 2).min(chars.len())].iter().collect();
            let sym = match two.as_str() {
                "!=" => "!=",
                "<>" => "!=",
                "<=" => "<=",
                ">=" => ">=",
                _ => match c {
                    '=' => "=",
                    '<' => "<",
                    '>' => ">",
                    _ => return Err(SoqlError(format!("unexpected character '{c}'"))),
                },
            };
            i += if sym.len() == 2 || two == "<>" { 2 } else { 1 };
            out.push(Tok::Sym(sym));
        } else {
            let start = i;
            while i < chars.len() && !chars[i].is_whitespace() && !"(),=!<>'".contains(chars[i]) {
                i += 1;
            }
            out.push(Tok::Word(chars[start..i].iter().collect()));
        }
    }
    Ok(out)
}

struct Parser {
    toks: Vec<Tok>,
    pos: usize,
}

impl Parser {
    fn peek_word(&self, w: &str) -> bool {
        matches!(self.toks.get(self.pos), Some(Tok::Word(x)) if x.eq_ignore_ascii_case(w))
    }

    fn eat_word(&mut self, w: &str) -> bool {
        let yes = self.peek_word(w);
        if yes {
            self.pos += 1;
        }
        yes
    }

    fn expect_word(&mut self, w: &str) -> Result<(), SoqlError> {
        if self.eat_word(w) { Ok(()) } else { Err(self.unexpected(w)) }
    }

    fn eat_sym(&mut self, s: &str) -> bool {
        let yes = matches!(self.toks.get(self.pos), Some(Tok::Sym(x)) if *x == s);
        if yes {
            self.pos += 1;
        }
        yes
    }

    fn unexpected(&self, wanted: &str) -> SoqlError {
        match self.toks.get(self.pos) {
            Some(t) => SoqlError(format!("unexpected token: {t:?}, expecting {wanted}")),
            None => SoqlError(format!("unexpected end of query, expecting {wanted}")),
        }
    }

    fn ident(&mut self) -> Result<String, SoqlError> {
        match self.toks.get(self.pos) {
            Some(Tok::Word(w)) if w.chars().next().is_some_and(|c| c.is_ascii_alphabetic()) => {
                self.pos += 1;
                Ok(w.clone())
            }
            _ => Err(self.unexpected("a field name")),
        }
    }

    fn literal(&mut self) -> Result<Lit, SoqlError> {
        let tok = self.toks.get(self.pos).cloned();
        self.pos += 1;
        match tok {
            Some(Tok::Str(s)) => Ok(Lit::Str(s)),
            Some(Tok::Word(w)) => parse_bare_literal(&w),
            _ => Err(SoqlError("expecting a literal".into())),
        }
    }

    fn expr(&mut self) -> Result<Expr, SoqlError> {
        let mut left = self.and()?;
        while self.eat_word("OR") {
            left = Expr::Or(Box::new(left), Box::new(self.and()?));
        }
        Ok(left)
    }

    fn and(&mut self) -> Result<Expr, SoqlError> {
        let mut left = self.unary()?;
        while self.eat_word("AND") {
            left = Expr::And(Box::new(left), Box::new(self.unary()?));
        }
        Ok(left)
    }

    fn unary(&mut self) -> Result<Expr, SoqlError> {
        if self.eat_word("NOT") {
            return Ok(Expr::Not(Box::new(self.unary()?)));
        }
        if self.eat_sym("(") {
            let e = self.expr()?;
            if !self.eat_sym(")") {
                return Err(self.unexpected(")"));
            }
            return Ok(e);
        }
        let field = self.ident()?;
        let negated_in = self.peek_word("NOT");
        if negated_in {
            self.pos += 1;
        }
        if self.eat_word("IN") {
            if !self.eat_sym("(") {
                return Err(self.unexpected("("));
            }
            if self.peek_word("SELECT") {
                let sub = self.query()?;
                if !self.eat_sym(")") {
                    return Err(self.unexpected(")"));
                }
                if sub.fields.as_ref().is_none_or(|f| f.len() != 1) {
                    return Err(SoqlError("a semi join sub-select must select exactly one field".into()));
                }
                if sub.filter.as_ref().is_some_and(Expr::has_semi_join) {
                    return Err(SoqlError("Nesting of semi join sub-selects is not supported".into()));
                }
                return Ok(Expr::SemiJoin(field, Box::new(sub), negated_in));
            }
            let mut values = vec![self.literal()?];
            while self.eat_sym(",") {
                values.push(self.literal()?);
            }
            if !self.eat_sym(")") {
                return Err(self.unexpected(")"));
            }
            return Ok(Expr::In(field, values, negated_in));
        }
        if negated_in {
            return Err(self.unexpected("IN"));
        }
        let op = match self.toks.get(self.pos) {
            Some(Tok::Sym("=")) => Op::Eq,
            Some(Tok::Sym("!=")) => Op::Ne,
            Some(Tok::Sym("<")) => Op::Lt,
            Some(Tok::Sym("<=")) => Op::Le,
            Some(Tok::Sym(">")) => Op::Gt,
            Some(Tok::Sym(">=")) => Op::Ge,
            Some(Tok::Word(w)) if w.eq_ignore_ascii_case("LIKE") => Op::Like,
            _ => return Err(self.unexpected("an operator")),
        };
        self.pos += 1;
        Ok(Expr::Cmp(field, op, self.literal()?))
    }
}

fn parse_bare_literal(w: &str) -> Result<Lit, SoqlError> {
    if w.eq_ignore_ascii_case("null") {
        return Ok(Lit::Null);
    }
    if w.eq_ignore_ascii_case("true") {
        return Ok(Lit::Bool(true));
    }
    if w.eq_ignore_ascii_case("false") {
        return Ok(Lit::Bool(false));
    }
    if w.contains('T') && w.starts_with(|c: char| c.is_ascii_digit()) {
        return parse_datetime(w)
            .map(Lit::DateTime)
            .ok_or_else(|| SoqlError(format!("invalid date/time literal: {w}")));
    }
    if NaiveDate::parse_from_str(w, "%Y-%m-%d").is_ok() {
        return Ok(Lit::Str(w.to_owned()));
    }
    w.parse::<f64>().map(Lit::Num).map_err(|_| SoqlError(format!("unexpected token: {w}")))
}

/// Parses SOQL and API datetimes: `2024-01-01T00:00:00Z`, `...+00:00`, `...+0000`, with or
/// without milliseconds.
pub fn parse_datetime(w: &str) -> Option<i64> {
    if let Ok(d) = DateTime::parse_from_rfc3339(w) {
        return Some(d.timestamp_millis());
    }
    DateTime::parse_from_str(w, "%Y-%m-%dT%H:%M:%S%.f%z").ok().map(|d| d.timestamp_millis())
}

/// Parses one query.
pub fn parse(q: &str) -> Result<Query, SoqlError> {
    let mut p = Parser { toks: tokenize(q)?, pos: 0 };
    let query = p.query()?;
    if p.pos < p.toks.len() {
        return Err(p.unexpected("end of query"));
    }
    if query.filter.as_ref().is_some_and(Expr::semi_join_under_or) {
        return Err(SoqlError("Semi join sub-selects are not allowed with the 'OR' operator".into()));
    }
    Ok(query)
}

impl Parser {
    /// `SELECT ... [LIMIT n]`, stopping at the end or at a token it does not take (a sub-select's
    /// closing parenthesis).
    fn query(&mut self) -> Result<Query, SoqlError> {
        let p = self;
        p.expect_word("SELECT")?;
        let fields = if p.peek_word("COUNT") {
            p.pos += 1;
            if !(p.eat_sym("(") && p.eat_sym(")")) {
                return Err(SoqlError("only COUNT() is supported".into()));
            }
            None
        } else {
            let mut fields = vec![p.ident()?];
            while p.eat_sym(",") {
                fields.push(p.ident()?);
            }
            Some(fields)
        };
        p.expect_word("FROM")?;
        let from = p.ident()?;
        let filter = if p.eat_word("WHERE") { Some(p.expr()?) } else { None };
        let mut order = Vec::new();
        if p.eat_word("ORDER") {
            p.expect_word("BY")?;
            loop {
                let f = p.ident()?;
                let asc = if p.eat_word("DESC") {
                    false
                } else {
                    p.eat_word("ASC");
                    true
                };
                order.push((f, asc));
                if !p.eat_sym(",") {
                    break;
                }
            }
        }
        let limit = if p.eat_word("LIMIT") {
            match p.literal()? {
                Lit::Num(n) if n >= 0.0 => Some(n as usize),
                _ => return Err(SoqlError("LIMIT must be a non-negative integer".into())),
            }
        } else {
            None
        };
        Ok(Query { fields, from, filter, order, limit })
    }
}

/// Orders two values as SOQL does for `ORDER BY ... ASC` (nulls first).
pub fn compare(a: &Lit, b: &Lit) -> Ordering {
    match (a, b) {
        (Lit::Null, Lit::Null) => Ordering::Equal,
        (Lit::Null, _) => Ordering::Less,
        (_, Lit::Null) => Ordering::Greater,
        (Lit::Str(x), Lit::Str(y)) => x.to_lowercase().cmp(&y.to_lowercase()).then(x.cmp(y)),
        (Lit::Num(x), Lit::Num(y)) => x.partial_cmp(y).unwrap_or(Ordering::Equal),
        (Lit::DateTime(x), Lit::DateTime(y)) => x.cmp(y),
        (Lit::Bool(x), Lit::Bool(y)) => x.cmp(y),
        _ => Ordering::Equal,
    }
}

fn same_kind(a: &Lit, b: &Lit) -> bool {
    std::mem::discriminant(a) == std::mem::discriminant(b)
}

fn like(value: &str, pattern: &str) -> bool {
    let v = value.to_lowercase();
    let p = pattern.to_lowercase();
    let parts: Vec<&str> = p.split('%').collect();
    if parts.len() == 1 {
        return v == p;
    }
    let mut rest = v.as_str();
    for (i, part) in parts.iter().enumerate() {
        if i == 0 {
            match rest.strip_prefix(part) {
                Some(r) => rest = r,
                None => return false,
            }
        } else if i == parts.len() - 1 {
            return rest.ends_with(part);
        } else {
            match rest.find(part) {
                Some(at) => rest = &rest[at + part.len()..],
                None => return false,
            }
        }
    }
    true
}

impl Expr {
    /// Evaluates against a record, given a way to read a field as a literal.
    pub fn eval(&self, get: &dyn Fn(&str) -> Lit) -> bool {
        match self {
            Expr::And(a, b) => a.eval(get) && b.eval(get),
            Expr::Or(a, b) => a.eval(get) || b.eval(get),
            Expr::Not(a) => !a.eval(get),
            // Unresolved (the store resolves semi-joins first): matches nothing.
            Expr::SemiJoin(..) => false,
            Expr::In(f, values, negated) => {
                let v = get(f);
                let found = values.iter().any(|l| same_kind(&v, l) && compare(&v, l) == Ordering::Equal);
                found != *negated
            }
            Expr::Cmp(f, op, lit) => {
                let v = get(f);
                if *op == Op::Like {
                    return matches!((&v, lit), (Lit::Str(s), Lit::Str(p)) if like(s, p));
                }
                if matches!(v, Lit::Null) || matches!(lit, Lit::Null) {
                    let both = matches!(v, Lit::Null) && matches!(lit, Lit::Null);
                    return match op {
                        Op::Eq => both,
                        Op::Ne => !both,
                        _ => false,
                    };
                }
                if !same_kind(&v, lit) {
                    return false;
                }
                let ord = compare(&v, lit);
                match op {
                    Op::Eq => ord == Ordering::Equal,
                    Op::Ne => ord != Ordering::Equal,
                    Op::Lt => ord == Ordering::Less,
                    Op::Le => ord != Ordering::Greater,
                    Op::Gt => ord == Ordering::Greater,
                    Op::Ge => ord != Ordering::Less,
                    Op::Like => false,
                }
            }
        }
    }

    /// Every field name the expression reads.
    pub fn fields(&self, out: &mut Vec<String>) {
        match self {
            Expr::And(a, b) | Expr::Or(a, b) => {
                a.fields(out);
                b.fields(out);
            }
            Expr::Not(a) => a.fields(out),
            Expr::Cmp(f, _, _) | Expr::In(f, _, _) | Expr::SemiJoin(f, _, _) => out.push(f.clone()),
        }
    }

    fn has_semi_join(&self) -> bool {
        match self {
            Expr::And(a, b) | Expr::Or(a, b) => a.has_semi_join() || b.has_semi_join(),
            Expr::Not(a) => a.has_semi_join(),
            Expr::SemiJoin(..) => true,
            Expr::Cmp(..) | Expr::In(..) => false,
        }
    }

    fn semi_join_under_or(&self) -> bool {
        match self {
            Expr::Or(a, b) => a.has_semi_join() || b.has_semi_join(),
            Expr::And(a, b) => a.semi_join_under_or() || b.semi_join_under_or(),
            Expr::Not(a) => a.semi_join_under_or(),
            Expr::SemiJoin(..) | Expr::Cmp(..) | Expr::In(..) => false,
        }
    }

    /// The expression with each semi-join replaced by what `resolve(field, sub-select, negated)`
    /// answers (the store: an [`Expr::In`] of the sub-select's values).
    pub fn map_semi_joins<E>(
        &self,
        resolve: &mut dyn FnMut(&str, &Query, bool) -> Result<Expr, E>,
    ) -> Result<Expr, E> {
        Ok(match self {
            Expr::And(a, b) => {
                Expr::And(Box::new(a.map_semi_joins(resolve)?), Box::new(b.map_semi_joins(resolve)?))
            }
            Expr::Or(a, b) => {
                Expr::Or(Box::new(a.map_semi_joins(resolve)?), Box::new(b.map_semi_joins(resolve)?))
            }
            Expr::Not(a) => Expr::Not(Box::new(a.map_semi_joins(resolve)?)),
            Expr::SemiJoin(f, q, negated) => resolve(f, q, *negated)?,
            other => other.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_keyset_query_the_adapter_sends() {
        let q = parse(
            "SELECT Id, Email FROM Contact WHERE SystemModstamp > 2024-01-01T00:00:00.000Z OR \
             (SystemModstamp = 2024-01-01T00:00:00Z AND Id > '003A') ORDER BY SystemModstamp, Id DESC LIMIT 5",
        )
        .unwrap();
        assert_eq!(q.fields.as_deref(), Some(&["Id".to_owned(), "Email".to_owned()][..]));
        assert_eq!(q.from, "Contact");
        assert_eq!(q.order, vec![("SystemModstamp".to_owned(), true), ("Id".to_owned(), false)]);
        assert_eq!(q.limit, Some(5));
        let ts = parse_datetime("2024-01-01T00:00:00Z").unwrap();
        let get = |id: &'static str, at: i64| {
            move |f: &str| match f {
                "SystemModstamp" => Lit::DateTime(at),
                _ => Lit::Str(id.into()),
            }
        };
        let filter = q.filter.unwrap();
        assert!(filter.eval(&get("003B", ts)));
        assert!(!filter.eval(&get("003A", ts)));
        assert!(filter.eval(&get("0030", ts + 1000)));
    }

    #[test]
    fn count_in_and_bad_queries() {
        let q = parse("select count() from Account where Id in ('a', 'b') and Name != null").unwrap();
        assert!(q.fields.is_none());
        let f = q.filter.unwrap();
        assert!(f.eval(&|n: &str| if n == "Id" { Lit::Str("b".into()) } else { Lit::Str("x".into()) }));
        assert!(!f.eval(&|n: &str| if n == "Id" { Lit::Str("c".into()) } else { Lit::Str("x".into()) }));
        assert!(parse("SELECT FROM Contact").is_err());
        assert!(parse("SELECT Id FROM Contact WHERE").is_err());
        assert!(parse("SELECT Id FROM Contact WHERE SystemModstamp > 2024-13-01T00:00:00Z").is_err());
        assert!(like("Hello World", "hello%"));
        assert!(!like("Hello", "%x%"));
    }
}
