//! The subset of Drive's `files.list` query language the fake understands
//! (<https://developers.google.com/workspace/drive/api/guides/search-files>): `'<id>' in parents`,
//! `trashed = true|false`, `mimeType = | != '...'`, `name = | != | contains '...'`,
//! `modifiedTime` and `createdTime` compared with `=`, `!=`, `<`, `<=`, `>`, `>=` to an RFC 3339
//! string, `'<email>' in owners|writers|readers`, joined by `and`, `or`, `not` and parentheses.
//! Anything else is a parse error, which the server answers as Drive does: 400 `invalid`,
//! "Invalid Value", location `q`.

use chrono::{DateTime, Utc};

use super::store::StoredFile;

#[derive(Debug, Clone, PartialEq)]
pub enum Query {
    And(Box<Query>, Box<Query>),
    Or(Box<Query>, Box<Query>),
    Not(Box<Query>),
    InParents(String),
    InRole(String, Role),
    Trashed(bool),
    MimeType { equal: bool, value: String },
    Name { op: TextOp, value: String },
    Time { field: TimeField, op: Cmp, value: DateTime<Utc> },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Owners,
    Writers,
    Readers,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TextOp {
    Eq,
    Ne,
    Contains,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeField {
    Modified,
    Created,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cmp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Str(String),
    Word(String),
    Op(String),
    Open,
    Close,
}

fn tokenize(q: &str) -> Result<Vec<Tok>, ()> {
    let mut out = Vec::new();
    let chars: Vec<char> = q.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        match c {
            c if c.is_whitespace() => i += 1,
            '(' => {
                out.push(Tok::Open);
                i += 1;
            }
            ')' => {
                out.push(Tok::Close);
                i += 1;
            }
            '\'' | '"' => {
                let quote = c;
                let mut s = String::new();
                i += 1;
                loop {
                    let Some(&ch) = chars.get(i) else { return Err(()) };
                    i += 1;
                    match ch {
                        '\\' => {
                            let Some(&next) = chars.get(i) else { return Err(()) };
                            s.push(next);
                            i += 1;
                        }
                        ch if ch == quote => break,
                        ch => s.push(ch),
                    }
                }
                out.push(Tok::Str(s));
            }
            '=' | '<' | '>' | '!' => {
                let mut op = c.to_string();
                if chars.get(i + 1) == Some(&'=') {
                    op.push('=');
                    i += 1;
                }
                if op == "!" {
                    return Err(());
                }
                out.push(Tok::Op(op));
                i += 1;
            }
            c if c.is_ascii_alphanumeric() || c == '_' => {
                let start = i;
                while chars.get(i).is_some_and(|c| c.is_ascii_alphanumeric() || *c == '_') {
                    i += 1;
                }
                out.push(Tok::Word(chars[start..i].iter().collect()));
            }
            _ => return Err(()),
        }
    }
    Ok(out)
}

struct Parser {
    toks: Vec<Tok>,
    pos: usize,
}

impl Parser {
    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.pos)
    }

    fn next(&mut self) -> Option<Tok> {
        let t = self.toks.get(self.pos).cloned();
        self.pos += 1;
        t
    }

    fn keyword(&self, word: &str) -> bool {
        matches!(self.peek(), Some(Tok::Word(w)) if w.eq_ignore_ascii_case(word))
    }

    fn or(&mut self) -> Result<Query, ()> {
        let mut left = self.and()?;
        while self.keyword("or") {
            self.pos += 1;
            left = Query::Or(Box::new(left), Box::new(self.and()?));
        }
        Ok(left)
    }

    fn and(&mut self) -> Result<Query, ()> {
        let mut left = self.unary()?;
        while self.keyword("and") {
            self.pos += 1;
            left = Query::And(Box::new(left), Box::new(self.unary()?));
        }
        Ok(left)
    }

    fn unary(&mut self) -> Result<Query, ()> {
        if self.keyword("not") {
            self.pos += 1;
            return Ok(Query::Not(Box::new(self.unary()?)));
        }
        if self.peek() == Some(&Tok::Open) {
            self.pos += 1;
            let inner = self.or()?;
            return match self.next() {
                Some(Tok::Close) => Ok(inner),
                _ => Err(()),
            };
        }
        self.term()
    }

    fn term(&mut self) -> Result<Query, ()> {
        match self.next().ok_or(())? {
            Tok::Str(value) => {
                if !self.keyword("in") {
                    return Err(());
                }
                self.pos += 1;
                match self.next() {
                    Some(Tok::Word(w)) if w == "parents" => Ok(Query::InParents(value)),
                    Some(Tok::Word(w)) if w == "owners" => Ok(Query::InRole(value, Role::Owners)),
                    Some(Tok::Word(w)) if w == "writers" => Ok(Query::InRole(value, Role::Writers)),
                    Some(Tok::Word(w)) if w == "readers" => Ok(Query::InRole(value, Role::Readers)),
                    _ => Err(()),
                }
            }
            Tok::Word(field) => {
                let op = self.next().ok_or(())?;
                let value = self.next().ok_or(())?;
                term_of(&field, op, value)
            }
            _ => Err(()),
        }
    }
}

fn term_of(field: &str, op: Tok, value: Tok) -> Result<Query, ()> {
    match (field, op, value) {
        ("trashed", Tok::Op(op), Tok::Word(v)) if op == "=" || op == "!=" => {
            let b = match v.as_str() {
                "true" => true,
                "false" => false,
                _ => return Err(()),
            };
            Ok(Query::Trashed(if op == "=" { b } else { !b }))
        }
        ("mimeType", Tok::Op(op), Tok::Str(value)) if op == "=" || op == "!=" => {
            Ok(Query::MimeType { equal: op == "=", value })
        }
        ("name", Tok::Op(op), Tok::Str(value)) if op == "=" || op == "!=" => {
            Ok(Query::Name { op: if op == "=" { TextOp::Eq } else { TextOp::Ne }, value })
        }
        ("name", Tok::Word(w), Tok::Str(value)) if w == "contains" => {
            Ok(Query::Name { op: TextOp::Contains, value })
        }
        (f @ ("modifiedTime" | "createdTime"), Tok::Op(op), Tok::Str(value)) => {
            let op = match op.as_str() {
                "=" => Cmp::Eq,
                "!=" => Cmp::Ne,
                "<" => Cmp::Lt,
                "<=" => Cmp::Le,
                ">" => Cmp::Gt,
                ">=" => Cmp::Ge,
                _ => return Err(()),
            };
            let value = DateTime::parse_from_rfc3339(&value).map_err(|_| ())?.with_timezone(&Utc);
            let field = if f == "modifiedTime" { TimeField::Modified } else { TimeField::Created };
            Ok(Query::Time { field, op, value })
        }
        _ => Err(()),
    }
}

/// Parses a `q` parameter; `Err(())` for anything outside the subset.
pub fn parse(q: &str) -> Result<Query, ()> {
    let toks = tokenize(q)?;
    if toks.is_empty() {
        return Err(());
    }
    let mut p = Parser { toks, pos: 0 };
    let query = p.or()?;
    if p.pos != p.toks.len() {
        return Err(());
    }
    Ok(query)
}

impl Query {
    /// Whether `file` matches; `root` is the root folder's id (`'root' in parents` means it).
    pub fn matches(&self, file: &StoredFile, root: &str) -> bool {
        match self {
            Query::And(a, b) => a.matches(file, root) && b.matches(file, root),
            Query::Or(a, b) => a.matches(file, root) || b.matches(file, root),
            Query::Not(a) => !a.matches(file, root),
            Query::InParents(id) => {
                let id = if id == "root" { root } else { id.as_str() };
                file.parents.iter().any(|p| p == id)
            }
            Query::InRole(email, role) => file.permissions.iter().any(|p| {
                p.email.as_deref().is_some_and(|e| e.eq_ignore_ascii_case(email))
                    && match role {
                        Role::Owners => p.role == "owner",
                        Role::Writers => matches!(p.role.as_str(), "owner" | "writer"),
                        Role::Readers => true,
                    }
            }),
            Query::Trashed(t) => file.trashed == *t,
            Query::MimeType { equal, value } => (file.mime_type == *value) == *equal,
            Query::Name { op, value } => match op {
                TextOp::Eq => file.name == *value,
                TextOp::Ne => file.name != *value,
                // Drive's `contains` on names matches word prefixes; a case-insensitive substring
                // is the fake's looser reading, enough for the adapter's needs (it sends none).
                TextOp::Contains => file.name.to_lowercase().contains(&value.to_lowercase()),
            },
            Query::Time { field, op, value } => {
                let t = match field {
                    TimeField::Modified => file.modified,
                    TimeField::Created => file.created,
                };
                match op {
                    Cmp::Eq => t == *value,
                    Cmp::Ne => t != *value,
                    Cmp::Lt => t < *value,
                    Cmp::Le => t <= *value,
                    Cmp::Gt => t > *value,
                    Cmp::Ge => t >= *value,
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_subset_parses_with_precedence_and_anything_else_is_refused() {
        let q = parse("'root' in parents and trashed = false or name contains 'Acme'").expect("parses");
        assert!(matches!(q, Query::Or(..)), "and binds tighter than or: {q:?}");
        assert!(parse("not (mimeType = 'application/vnd.google-apps.folder')").is_ok());
        assert!(parse("modifiedTime > '2026-01-01T00:00:00Z'").is_ok());
        assert!(parse("'ann@acme.example' in writers").is_ok());
        for bad in [
            "",
            "title = 'x'",
            "trashed = maybe",
            "name contains",
            "'x' in children",
            "(trashed = true",
            "mimeType = folder",
            "modifiedTime > 'yesterday'",
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }
}
