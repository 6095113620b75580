//! Reading a CloudFormation/SAM template: YAML short tags (`!Ref`, `!GetAtt`, `!Sub`, ...) turned
//! into their long JSON form, the order resources must be created in, and the intrinsic functions
//! the local stack resolves (`Ref`, `Fn::GetAtt`, `Fn::Sub`, `Fn::Join`, `Fn::Select`).

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Map, Number, Value};

/// Why a template could not be read or one of its values resolved.
#[derive(Debug, thiserror::Error)]
pub enum TemplateError {
    #[error("template is not valid YAML")]
    Yaml(#[from] serde_yaml::Error),
    #[error("template is malformed: {0}")]
    Malformed(String),
    #[error("intrinsic {0} is not supported locally (Ref, Fn::GetAtt, Fn::Sub, Fn::Join, Fn::Select are)")]
    Unsupported(String),
    #[error("{0} cannot be resolved locally")]
    Unresolved(String),
    #[error("resources depend on each other in a cycle: {0:?}")]
    Cycle(Vec<String>),
}

/// One entry of the template's `Resources` section, properties still unresolved.
#[derive(Debug, Clone)]
pub struct TemplateResource {
    pub kind: String,
    pub properties: Value,
    pub depends_on: Vec<String>,
}

/// A parsed template: everything in long (JSON) form.
#[derive(Debug, Clone)]
pub struct Template {
    pub parameters: Map<String, Value>,
    pub globals: Value,
    pub resources: BTreeMap<String, TemplateResource>,
}

impl Template {
    /// Parses template text (YAML or JSON); short tags become `{"Ref": ..}` / `{"Fn::X": ..}`.
    pub fn parse(text: &str) -> Result<Self, TemplateError> {
        let yaml: serde_yaml::Value = serde_yaml::from_str(text)?;
        let Value::Object(mut root) = normalize(yaml)? else {
            return Err(TemplateError::Malformed("the top level is not a mapping".into()));
        };
        let parameters = match root.remove("Parameters") {
            Some(Value::Object(p)) => p,
            None => Map::new(),
            Some(_) => return Err(TemplateError::Malformed("Parameters is not a mapping".into())),
        };
        let globals = root.remove("Globals").unwrap_or(Value::Null);
        let Some(Value::Object(entries)) = root.remove("Resources") else {
            return Err(TemplateError::Malformed("Resources is missing or not a mapping".into()));
        };
        let mut resources = BTreeMap::new();
        for (id, entry) in entries {
            let Value::Object(mut entry) = entry else {
                return Err(TemplateError::Malformed(format!("resource {id} is not a mapping")));
            };
            let Some(Value::String(kind)) = entry.remove("Type") else {
                return Err(TemplateError::Malformed(format!("resource {id} has no Type")));
            };
            let depends_on = match entry.remove("DependsOn") {
                None => Vec::new(),
                Some(Value::String(one)) => vec![one],
                Some(Value::Array(many)) => many
                    .into_iter()
                    .map(|d| match d {
                        Value::String(s) => Ok(s),
                        _ => Err(TemplateError::Malformed(format!(
                            "resource {id}: DependsOn entry is not a name"
                        ))),
                    })
                    .collect::<Result<_, _>>()?,
                Some(_) => {
                    return Err(TemplateError::Malformed(format!("resource {id}: DependsOn is malformed")));
                }
            };
            let properties = entry.remove("Properties").unwrap_or_else(|| Value::Object(Map::new()));
            resources.insert(id, TemplateResource { kind, properties, depends_on });
        }
        Ok(Self { parameters, globals, resources })
    }

    /// The logical ids of the resources whose type is in `kinds`, ordered so every resource comes
    /// after the ones it references (`Ref`, `Fn::GetAtt`, `Fn::Sub` variables, `DependsOn`).
    /// References to resources outside the selection are left for [`Scope::resolve`] to reject.
    pub fn creation_order(&self, kinds: &[&str]) -> Result<Vec<String>, TemplateError> {
        let selected: BTreeMap<&str, BTreeSet<String>> = self
            .resources
            .iter()
            .filter(|(_, r)| kinds.contains(&r.kind.as_str()))
            .map(|(id, r)| {
                let mut deps = references(&r.properties);
                deps.extend(r.depends_on.iter().cloned());
                deps.remove(id);
                (id.as_str(), deps)
            })
            .collect();
        let mut order: Vec<String> = Vec::with_capacity(selected.len());
        let mut done: BTreeSet<&str> = BTreeSet::new();
        while done.len() < selected.len() {
            let ready: Vec<&str> = selected
                .iter()
                .filter(|(id, deps)| {
                    !done.contains(*id)
                        && deps
                            .iter()
                            .all(|d| done.contains(d.as_str()) || !selected.contains_key(d.as_str()))
                })
                .map(|(id, _)| *id)
                .collect();
            if ready.is_empty() {
                let stuck =
                    selected.keys().filter(|id| !done.contains(*id)).map(|id| (*id).to_owned()).collect();
                return Err(TemplateError::Cycle(stuck));
            }
            for id in ready {
                done.insert(id);
                order.push(id.to_owned());
            }
        }
        Ok(order)
    }
}

/// What `Ref` and `Fn::GetAtt` give for a resource that has been created.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Physical {
    /// The value of `Ref` (a table or bus name, a queue URL).
    pub reference: String,
    /// `Fn::GetAtt` attributes (`Arn`, `QueueName`, ...).
    pub attributes: BTreeMap<String, String>,
}

/// Everything a value can refer to: pseudo parameters, parameter defaults, created resources.
#[derive(Debug, Clone)]
pub struct Scope {
    pseudo: BTreeMap<&'static str, String>,
    parameters: Map<String, Value>,
    /// Resources created so far, by logical id.
    pub created: BTreeMap<String, Physical>,
}

impl Scope {
    /// `stack_name` stands in for `AWS::StackName`; parameters resolve to their `Default`.
    pub fn new(stack_name: &str, region: &str, account_id: &str, parameters: Map<String, Value>) -> Self {
        let pseudo = BTreeMap::from([
            ("AWS::StackName", stack_name.to_owned()),
            (
                "AWS::StackId",
                format!("arn:aws:cloudformation:{region}:{account_id}:stack/{stack_name}/local"),
            ),
            ("AWS::Region", region.to_owned()),
            ("AWS::AccountId", account_id.to_owned()),
            ("AWS::Partition", "aws".to_owned()),
            ("AWS::URLSuffix", "amazonaws.com".to_owned()),
        ]);
        Self { pseudo, parameters, created: BTreeMap::new() }
    }

    /// Resolves every intrinsic in `value`. `AWS::NoValue` removes the key or item holding it.
    pub fn resolve(&self, value: &Value) -> Result<Value, TemplateError> {
        Ok(self.resolve_opt(value)?.unwrap_or(Value::Null))
    }

    fn resolve_opt(&self, value: &Value) -> Result<Option<Value>, TemplateError> {
        match value {
            Value::Object(map) if map.len() == 1 => {
                let Some((key, arg)) = map.iter().next() else { return Ok(Some(Value::Object(Map::new()))) };
                match key.as_str() {
                    "Ref" => self.reference(arg),
                    "Fn::GetAtt" => self.get_att(arg).map(|s| Some(Value::String(s))),
                    "Fn::Sub" => self.sub(arg).map(|s| Some(Value::String(s))),
                    "Fn::Join" => self.join(arg).map(|s| Some(Value::String(s))),
                    "Fn::Select" => self.select(arg).map(Some),
                    k if k.starts_with("Fn::") || k == "Condition" => {
                        Err(TemplateError::Unsupported(k.to_owned()))
                    }
                    _ => self.resolve_map(map).map(Some),
                }
            }
            Value::Object(map) => self.resolve_map(map).map(Some),
            Value::Array(items) => {
                let mut out = Vec::with_capacity(items.len());
                for item in items {
                    out.extend(self.resolve_opt(item)?);
                }
                Ok(Some(Value::Array(out)))
            }
            scalar => Ok(Some(scalar.clone())),
        }
    }

    fn resolve_map(&self, map: &Map<String, Value>) -> Result<Value, TemplateError> {
        let mut out = Map::new();
        for (k, v) in map {
            if let Some(v) = self.resolve_opt(v)? {
                out.insert(k.clone(), v);
            }
        }
        Ok(Value::Object(out))
    }

    fn reference(&self, arg: &Value) -> Result<Option<Value>, TemplateError> {
        let Value::String(name) = arg else {
            return Err(TemplateError::Malformed("Ref takes a name".into()));
        };
        if name == "AWS::NoValue" {
            return Ok(None);
        }
        self.lookup(name).map(|s| Some(Value::String(s)))
    }

    fn lookup(&self, name: &str) -> Result<String, TemplateError> {
        if let Some(v) = self.pseudo.get(name) {
            return Ok(v.clone());
        }
        if let Some(physical) = self.created.get(name) {
            return Ok(physical.reference.clone());
        }
        match self.parameters.get(name) {
            Some(param) => param
                .get("Default")
                .and_then(scalar_string)
                .ok_or_else(|| TemplateError::Unresolved(format!("parameter {name} (it has no Default)"))),
            None => Err(TemplateError::Unresolved(format!("Ref {name} (not created locally)"))),
        }
    }

    fn get_att(&self, arg: &Value) -> Result<String, TemplateError> {
        let (id, attr) = get_att_target(arg)
            .ok_or_else(|| TemplateError::Malformed("Fn::GetAtt takes [LogicalId, Attribute]".into()))?;
        self.attribute(&id, &attr)
    }

    fn attribute(&self, id: &str, attr: &str) -> Result<String, TemplateError> {
        self.created
            .get(id)
            .and_then(|p| p.attributes.get(attr))
            .cloned()
            .ok_or_else(|| TemplateError::Unresolved(format!("Fn::GetAtt {id}.{attr}")))
    }

    fn sub(&self, arg: &Value) -> Result<String, TemplateError> {
        let (text, vars) = match arg {
            Value::String(text) => (text.as_str(), Map::new()),
            Value::Array(items) => match items.as_slice() {
                [Value::String(text), Value::Object(vars)] => {
                    let mut resolved = Map::new();
                    for (k, v) in vars {
                        resolved.insert(k.clone(), self.resolve(v)?);
                    }
                    (text.as_str(), resolved)
                }
                _ => {
                    return Err(TemplateError::Malformed(
                        "Fn::Sub takes a string or [string, mapping]".into(),
                    ));
                }
            },
            _ => return Err(TemplateError::Malformed("Fn::Sub takes a string or [string, mapping]".into())),
        };
        let mut out = String::with_capacity(text.len());
        for piece in sub_pieces(text)? {
            match piece {
                SubPiece::Text(t) => out.push_str(t),
                SubPiece::Var(name) => match vars.get(name) {
                    Some(v) => out.push_str(&scalar_string(v).ok_or_else(|| {
                        TemplateError::Malformed(format!("Fn::Sub variable {name} is not a scalar"))
                    })?),
                    None => match name.split_once('.') {
                        Some((id, attr)) => out.push_str(&self.attribute(id, attr)?),
                        None => out.push_str(&self.lookup(name)?),
                    },
                },
            }
        }
        Ok(out)
    }

    fn join(&self, arg: &Value) -> Result<String, TemplateError> {
        let malformed = || TemplateError::Malformed("Fn::Join takes [delimiter, [values]]".into());
        let Value::Array(items) = arg else { return Err(malformed()) };
        let [Value::String(delimiter), list] = items.as_slice() else { return Err(malformed()) };
        let Value::Array(values) = self.resolve(list)? else { return Err(malformed()) };
        let parts = values.iter().map(scalar_string).collect::<Option<Vec<_>>>().ok_or_else(malformed)?;
        Ok(parts.join(delimiter))
    }

    fn select(&self, arg: &Value) -> Result<Value, TemplateError> {
        let malformed = || TemplateError::Malformed("Fn::Select takes [index, [values]]".into());
        let Value::Array(items) = arg else { return Err(malformed()) };
        let [index, list] = items.as_slice() else { return Err(malformed()) };
        let index: usize =
            scalar_string(&self.resolve(index)?).and_then(|s| s.parse().ok()).ok_or_else(malformed)?;
        let Value::Array(values) = self.resolve(list)? else { return Err(malformed()) };
        values.get(index).cloned().ok_or_else(malformed)
    }
}

/// A scalar as CloudFormation sees it: strings as they are, numbers and booleans as text.
pub fn scalar_string(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

fn get_att_target(arg: &Value) -> Option<(String, String)> {
    match arg {
        Value::String(dotted) => dotted.split_once('.').map(|(a, b)| (a.to_owned(), b.to_owned())),
        Value::Array(items) => match items.as_slice() {
            [Value::String(id), Value::String(attr)] => Some((id.clone(), attr.clone())),
            _ => None,
        },
        _ => None,
    }
}

enum SubPiece<'a> {
    Text(&'a str),
    Var(&'a str),
}

/// Splits an `Fn::Sub` string into text and `${Var}` references; `${!Literal}` stays `${Literal}`.
fn sub_pieces(text: &str) -> Result<Vec<SubPiece<'_>>, TemplateError> {
    let mut pieces = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        pieces.push(SubPiece::Text(&rest[..start]));
        let after = &rest[start + 2..];
        let end = after
            .find('}')
            .ok_or_else(|| TemplateError::Malformed(format!("unclosed ${{ in Fn::Sub string {text:?}")))?;
        let inner = &after[..end];
        match inner.strip_prefix('!') {
            Some(literal) => {
                pieces.push(SubPiece::Text("${"));
                pieces.push(SubPiece::Text(literal));
                pieces.push(SubPiece::Text("}"));
            }
            None => pieces.push(SubPiece::Var(inner.trim())),
        }
        rest = &after[end + 1..];
    }
    pieces.push(SubPiece::Text(rest));
    Ok(pieces)
}

/// The logical ids (and pseudo parameters) a value refers to.
pub fn references(value: &Value) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    collect_references(value, &mut out);
    out
}

fn collect_references(value: &Value, out: &mut BTreeSet<String>) {
    match value {
        Value::Object(map) => {
            for (k, v) in map {
                match (k.as_str(), v) {
                    ("Ref", Value::String(name)) => {
                        out.insert(name.clone());
                    }
                    ("Fn::GetAtt", arg) => {
                        if let Some((id, _)) = get_att_target(arg) {
                            out.insert(id);
                        }
                    }
                    ("Fn::Sub", arg) => {
                        let (text, vars) = match arg {
                            Value::String(t) => (Some(t.as_str()), None),
                            Value::Array(items) => match items.as_slice() {
                                [Value::String(t), Value::Object(vars)] => (Some(t.as_str()), Some(vars)),
                                _ => (None, None),
                            },
                            _ => (None, None),
                        };
                        if let Some(vars) = vars {
                            vars.values().for_each(|v| collect_references(v, out));
                        }
                        for piece in text.and_then(|t| sub_pieces(t).ok()).unwrap_or_default() {
                            let SubPiece::Var(name) = piece else { continue };
                            if !vars.is_some_and(|v| v.contains_key(name)) {
                                out.insert(name.split_once('.').map_or(name, |(id, _)| id).to_owned());
                            }
                        }
                    }
                    (_, v) => collect_references(v, out),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|v| collect_references(v, out)),
        _ => {}
    }
}

/// YAML (with CloudFormation short tags) to the JSON long form.
fn normalize(yaml: serde_yaml::Value) -> Result<Value, TemplateError> {
    use serde_yaml::Value as Y;
    Ok(match yaml {
        Y::Null => Value::Null,
        Y::Bool(b) => Value::Bool(b),
        Y::Number(n) => {
            if let Some(i) = n.as_i64() {
                Value::Number(i.into())
            } else if let Some(u) = n.as_u64() {
                Value::Number(u.into())
            } else {
                n.as_f64()
                    .and_then(Number::from_f64)
                    .map(Value::Number)
                    .ok_or_else(|| TemplateError::Malformed(format!("number {n} is not finite")))?
            }
        }
        Y::String(s) => Value::String(s),
        Y::Sequence(items) => Value::Array(items.into_iter().map(normalize).collect::<Result<_, _>>()?),
        Y::Mapping(map) => {
            let mut out = Map::new();
            for (k, v) in map {
                let key = match normalize(k)? {
                    Value::String(s) => s,
                    other => scalar_string(&other)
                        .ok_or_else(|| TemplateError::Malformed("a mapping key is not a scalar".into()))?,
                };
                out.insert(key, normalize(v)?);
            }
            Value::Object(out)
        }
        Y::Tagged(tagged) => {
            let tag = tagged.tag.to_string();
            let name = tag.trim_start_matches('!');
            let inner = normalize(tagged.value)?;
            let (key, arg) = match name {
                "Ref" | "Condition" => (name.to_owned(), inner),
                "GetAtt" => {
                    let arg = match &inner {
                        Value::String(dotted) => match dotted.split_once('.') {
                            Some((id, attr)) => Value::Array(vec![id.into(), attr.into()]),
                            None => inner,
                        },
                        _ => inner,
                    };
                    ("Fn::GetAtt".to_owned(), arg)
                }
                _ => (format!("Fn::{name}"), inner),
            };
            Value::Object(Map::from_iter([(key, arg)]))
        }
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    const TEMPLATE: &str = r#"
Parameters:
  Shards: {Type: Number, Default: 4}
  Secret: {Type: String}
Globals:
  Function:
    Environment:
      Variables:
        QUEUE: !Ref Queue
Resources:
  Queue:
    Type: AWS::SQS::Queue
    Properties:
      QueueName: !Sub "${AWS::StackName}-jobs.fifo"
      RedrivePolicy:
        deadLetterTargetArn: !GetAtt Dlq.Arn
        maxReceiveCount: 5
  Dlq:
    Type: AWS::SQS::Queue
    Properties:
      QueueName: !Join ["-", [!Ref "AWS::StackName", dlq]]
      Extra: !Ref AWS::NoValue
  Fn:
    Type: AWS::Serverless::Function
    DependsOn: Queue
"#;

    fn dlq() -> Physical {
        Physical {
            reference: "http://q/dlq".into(),
            attributes: BTreeMap::from([("Arn".to_owned(), "arn:aws:sqs:us-east-1:1:dlq".to_owned())]),
        }
    }

    #[test]
    fn short_tags_become_the_long_form() -> Result<(), TemplateError> {
        let t = Template::parse(TEMPLATE)?;
        let queue = &t.resources["Queue"].properties;
        assert_eq!(queue["QueueName"], json!({"Fn::Sub": "${AWS::StackName}-jobs.fifo"}));
        assert_eq!(queue["RedrivePolicy"]["deadLetterTargetArn"], json!({"Fn::GetAtt": ["Dlq", "Arn"]}));
        assert_eq!(t.globals["Function"]["Environment"]["Variables"]["QUEUE"], json!({"Ref": "Queue"}));
        assert_eq!(t.resources["Fn"].depends_on, vec!["Queue".to_owned()]);
        Ok(())
    }

    #[test]
    fn a_queue_is_created_after_the_dead_letter_queue_it_references() -> Result<(), TemplateError> {
        let t = Template::parse(TEMPLATE)?;
        assert_eq!(t.creation_order(&["AWS::SQS::Queue"])?, vec!["Dlq".to_owned(), "Queue".to_owned()]);
        Ok(())
    }

    #[test]
    fn intrinsics_resolve_against_pseudo_parameters_and_created_resources() -> Result<(), TemplateError> {
        let t = Template::parse(TEMPLATE)?;
        let mut scope = Scope::new("test-1", "us-east-1", "123456789012", t.parameters.clone());
        let dlq_props = scope.resolve(&t.resources["Dlq"].properties)?;
        assert_eq!(dlq_props, json!({"QueueName": "test-1-dlq"}));
        scope.created.insert("Dlq".into(), dlq());
        let queue = scope.resolve(&t.resources["Queue"].properties)?;
        assert_eq!(
            queue,
            json!({
                "QueueName": "test-1-jobs.fifo",
                "RedrivePolicy": {"deadLetterTargetArn": "arn:aws:sqs:us-east-1:1:dlq", "maxReceiveCount": 5}
            })
        );
        assert_eq!(scope.resolve(&json!({"Ref": "Shards"}))?, json!("4"));
        assert_eq!(
            scope.resolve(&json!({"Fn::Sub": "${!Literal}-${Dlq}"}))?,
            json!("${Literal}-http://q/dlq")
        );
        Ok(())
    }

    #[test]
    fn unresolvable_references_and_unknown_intrinsics_are_errors() -> Result<(), TemplateError> {
        let t = Template::parse(TEMPLATE)?;
        let scope = Scope::new("s", "us-east-1", "1", t.parameters.clone());
        assert!(matches!(scope.resolve(&json!({"Ref": "Secret"})), Err(TemplateError::Unresolved(_))));
        assert!(matches!(
            scope.resolve(&json!({"Fn::GetAtt": ["Dlq", "Arn"]})),
            Err(TemplateError::Unresolved(_))
        ));
        assert!(matches!(scope.resolve(&json!({"Fn::If": ["c", 1, 2]})), Err(TemplateError::Unsupported(_))));
        Ok(())
    }

    #[test]
    fn a_reference_cycle_is_reported() -> Result<(), TemplateError> {
        let t = Template::parse(
            "Resources:\n  A: {Type: X, Properties: {P: !Ref B}}\n  B: {Type: X, Properties: {P: !GetAtt A.Arn}}\n",
        )?;
        assert!(matches!(t.creation_order(&["X"]), Err(TemplateError::Cycle(ids)) if ids.len() == 2));
        Ok(())
    }
}
