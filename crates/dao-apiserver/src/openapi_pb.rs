//! OpenAPI v2 in protobuf: the Swagger 2.0 JSON document converted to gnostic's
//! `openapi.v2.Document` (OpenAPIv2.proto, package `openapi.v2`), the only form of
//! `/openapi/v2` that kubectl up to 1.28 asks for.
//!
//! The conversion reads the JSON as gnostic's own parser does, which is how upstream makes its
//! protobuf: each key gnostic knows becomes its field; each `x-` key becomes a `NamedAny`
//! vendor extension whose `Any.yaml` holds the value as YAML text; an object that is present but
//! empty (`"properties": {}`) is still a present, empty message, which kube-openapi tells apart
//! from an absent one. A key gnostic has no field for is not dropped silently: it is listed in
//! [`Encoded::skipped`], and the tests require Dao's document to have none.
//!
//! The field numbers are OpenAPIv2.proto's; the wire format (varints, fixed64 doubles,
//! length-delimited strings and messages) is written here directly.

use serde_json::{Map, Value};

const VARINT: u32 = 0;
const FIXED64: u32 = 1;
const LEN: u32 = 2;

/// A serialized `openapi.v2.Document` and what could not be carried over.
pub struct Encoded {
    pub bytes: Vec<u8>,
    /// `Message.key` for each JSON key (or value of the wrong JSON type) gnostic has no field
    /// for; each occurrence is listed.
    pub skipped: Vec<String>,
}

/// Converts a Swagger 2.0 document.
pub fn document(doc: &Value) -> Encoded {
    let mut w = Writer::default();
    match doc.as_object() {
        Some(doc) => w.document(doc),
        None => w.skip("Document", "(not an object)"),
    }
    Encoded {
        bytes: w.buf,
        skipped: w.skipped,
    }
}

#[derive(Default)]
struct Writer {
    buf: Vec<u8>,
    skipped: Vec<String>,
}

/// The YAML text gnostic keeps for a value it does not model (extensions, defaults, enums).
fn yaml(value: &Value) -> String {
    serde_yaml::to_string(value).expect("a JSON value is representable in YAML")
}

fn is_extension(key: &str) -> bool {
    key.starts_with("x-")
}

/// Wire-level writing.
impl Writer {
    fn varint(&mut self, mut v: u64) {
        while v >= 0x80 {
            self.buf.push(v as u8 | 0x80);
            v >>= 7;
        }
        self.buf.push(v as u8);
    }

    fn key(&mut self, field: u32, wire: u32) {
        self.varint(u64::from(field << 3 | wire));
    }

    /// A string element: written even when empty (repeated fields keep every element).
    fn string_always(&mut self, field: u32, s: &str) {
        self.key(field, LEN);
        self.varint(s.len() as u64);
        self.buf.extend_from_slice(s.as_bytes());
    }

    /// A singular proto3 scalar is left out when it has its default value.
    fn string(&mut self, field: u32, s: &str) {
        if !s.is_empty() {
            self.string_always(field, s);
        }
    }

    fn bool(&mut self, field: u32, b: bool) {
        if b {
            self.key(field, VARINT);
            self.varint(1);
        }
    }

    fn int64(&mut self, field: u32, v: i64) {
        if v != 0 {
            self.key(field, VARINT);
            // Negative int64s are ten-byte two's complement varints.
            self.varint(v as u64);
        }
    }

    fn double(&mut self, field: u32, v: f64) {
        if v != 0.0 {
            self.key(field, FIXED64);
            self.buf.extend_from_slice(&v.to_le_bytes());
        }
    }

    /// A length-delimited message, written even when empty: message fields have presence.
    fn message(&mut self, field: u32, body: impl FnOnce(&mut Writer)) {
        self.key(field, LEN);
        let start = self.buf.len();
        body(self);
        let len = (self.buf.len() - start) as u64;
        let mut prefix = Vec::with_capacity(10);
        let mut v = len;
        while v >= 0x80 {
            prefix.push(v as u8 | 0x80);
            v >>= 7;
        }
        prefix.push(v as u8);
        self.buf.splice(start..start, prefix);
    }

    fn skip(&mut self, message: &str, key: &str) {
        self.skipped.push(format!("{message}.{key}"));
    }
}

/// Typed JSON values onto fields; a value of the wrong JSON type is skipped.
impl Writer {
    fn str_value(&mut self, field: u32, v: &Value, message: &str, key: &str) {
        match v {
            Value::String(s) => self.string(field, s),
            _ => self.skip(message, key),
        }
    }

    fn strings_value(&mut self, field: u32, v: &Value, message: &str, key: &str) {
        match v {
            Value::Array(items) => {
                for item in items {
                    match item {
                        Value::String(s) => self.string_always(field, s),
                        _ => self.skip(message, key),
                    }
                }
            }
            _ => self.skip(message, key),
        }
    }

    fn bool_value(&mut self, field: u32, v: &Value, message: &str, key: &str) {
        match v {
            Value::Bool(b) => self.bool(field, *b),
            _ => self.skip(message, key),
        }
    }

    fn int_value(&mut self, field: u32, v: &Value, message: &str, key: &str) {
        match v.as_i64() {
            Some(n) => self.int64(field, n),
            None => self.skip(message, key),
        }
    }

    fn double_value(&mut self, field: u32, v: &Value, message: &str, key: &str) {
        match v.as_f64() {
            Some(n) => self.double(field, n),
            None => self.skip(message, key),
        }
    }

    /// An object value as a message, or skipped.
    fn object_value(
        &mut self,
        field: u32,
        v: &Value,
        message: &str,
        key: &str,
        body: impl FnOnce(&mut Writer, &Map<String, Value>),
    ) {
        match v {
            Value::Object(map) => self.message(field, |w| body(w, map)),
            _ => self.skip(message, key),
        }
    }

    /// `Any { yaml = 2 }`.
    fn any(&mut self, field: u32, v: &Value) {
        self.message(field, |w| w.string(2, &yaml(v)));
    }

    /// `NamedAny { name = 1; Any value = 2 }`, as vendor extensions are carried.
    fn extension(&mut self, field: u32, name: &str, v: &Value) {
        self.message(field, |w| {
            w.string(1, name);
            w.any(2, v);
        });
    }
}

/// The messages of OpenAPIv2.proto that Swagger documents use.
impl Writer {
    fn document(&mut self, doc: &Map<String, Value>) {
        const M: &str = "Document";
        for (k, v) in doc {
            match k.as_str() {
                "swagger" => self.str_value(1, v, M, k),
                "info" => self.object_value(2, v, M, k, Writer::info),
                "host" => self.str_value(3, v, M, k),
                "basePath" => self.str_value(4, v, M, k),
                "schemes" => self.strings_value(5, v, M, k),
                "consumes" => self.strings_value(6, v, M, k),
                "produces" => self.strings_value(7, v, M, k),
                "paths" => self.object_value(8, v, M, k, Writer::paths),
                // Definitions { repeated NamedSchema additional_properties = 1 }
                "definitions" => self.object_value(9, v, M, k, |w, defs| w.named_schemas(1, defs)),
                "externalDocs" => self.object_value(15, v, M, k, Writer::external_docs),
                k if is_extension(k) => self.extension(16, k, v),
                _ => self.skip(M, k),
            }
        }
    }

    fn info(&mut self, info: &Map<String, Value>) {
        const M: &str = "Info";
        for (k, v) in info {
            match k.as_str() {
                "title" => self.str_value(1, v, M, k),
                "version" => self.str_value(2, v, M, k),
                "description" => self.str_value(3, v, M, k),
                "termsOfService" => self.str_value(4, v, M, k),
                k if is_extension(k) => self.extension(7, k, v),
                _ => self.skip(M, k),
            }
        }
    }

    fn external_docs(&mut self, docs: &Map<String, Value>) {
        const M: &str = "ExternalDocs";
        for (k, v) in docs {
            match k.as_str() {
                "description" => self.str_value(1, v, M, k),
                "url" => self.str_value(2, v, M, k),
                k if is_extension(k) => self.extension(3, k, v),
                _ => self.skip(M, k),
            }
        }
    }

    /// `Paths { repeated NamedAny vendor_extension = 1; repeated NamedPathItem path = 2 }`.
    fn paths(&mut self, paths: &Map<String, Value>) {
        for (k, v) in paths {
            if is_extension(k) {
                self.extension(1, k, v);
                continue;
            }
            self.message(2, |w| {
                w.string(1, k);
                w.object_value(2, v, "PathItem", k, Writer::path_item);
            });
        }
    }

    fn path_item(&mut self, item: &Map<String, Value>) {
        const M: &str = "PathItem";
        for (k, v) in item {
            let operation = match k.as_str() {
                "$ref" => {
                    self.str_value(1, v, M, k);
                    continue;
                }
                "get" => 2,
                "put" => 3,
                "post" => 4,
                "delete" => 5,
                "options" => 6,
                "head" => 7,
                "patch" => 8,
                "parameters" => {
                    self.parameters(9, v, M, k);
                    continue;
                }
                k if is_extension(k) => {
                    self.extension(10, k, v);
                    continue;
                }
                _ => {
                    self.skip(M, k);
                    continue;
                }
            };
            self.object_value(operation, v, M, k, Writer::operation);
        }
    }

    fn operation(&mut self, op: &Map<String, Value>) {
        const M: &str = "Operation";
        for (k, v) in op {
            match k.as_str() {
                "tags" => self.strings_value(1, v, M, k),
                "summary" => self.str_value(2, v, M, k),
                "description" => self.str_value(3, v, M, k),
                "externalDocs" => self.object_value(4, v, M, k, Writer::external_docs),
                "operationId" => self.str_value(5, v, M, k),
                "produces" => self.strings_value(6, v, M, k),
                "consumes" => self.strings_value(7, v, M, k),
                "parameters" => self.parameters(8, v, M, k),
                "responses" => self.object_value(9, v, M, k, Writer::responses),
                "schemes" => self.strings_value(10, v, M, k),
                "deprecated" => self.bool_value(11, v, M, k),
                k if is_extension(k) => self.extension(13, k, v),
                _ => self.skip(M, k),
            }
        }
    }

    /// A list of `ParametersItem { oneof { Parameter parameter = 1; JsonReference
    /// json_reference = 2 } }`.
    fn parameters(&mut self, field: u32, v: &Value, message: &str, key: &str) {
        let Value::Array(items) = v else {
            return self.skip(message, key);
        };
        for item in items {
            let Value::Object(p) = item else {
                self.skip(message, key);
                continue;
            };
            self.message(field, |w| {
                if p.contains_key("$ref") {
                    w.message(2, |w| w.json_reference(p));
                } else {
                    w.message(1, |w| w.parameter(p));
                }
            });
        }
    }

    fn json_reference(&mut self, r: &Map<String, Value>) {
        const M: &str = "JsonReference";
        for (k, v) in r {
            match k.as_str() {
                "$ref" => self.str_value(1, v, M, k),
                "description" => self.str_value(2, v, M, k),
                _ => self.skip(M, k),
            }
        }
    }

    /// `Parameter { oneof { BodyParameter body_parameter = 1; NonBodyParameter
    /// non_body_parameter = 2 } }`, chosen by `in`, as is the `NonBodyParameter` variant.
    fn parameter(&mut self, p: &Map<String, Value>) {
        let variant = match p.get("in").and_then(Value::as_str) {
            Some("body") => return self.message(1, |w| w.body_parameter(p)),
            Some("header") => (1, "HeaderParameterSubSchema", false),
            Some("formData") => (2, "FormDataParameterSubSchema", true),
            Some("query") => (3, "QueryParameterSubSchema", true),
            Some("path") => (4, "PathParameterSubSchema", false),
            _ => return self.skip("Parameter", "in"),
        };
        let (field, message, allow_empty_value) = variant;
        self.message(2, |w| {
            w.message(field, |w| {
                w.non_body_parameter(p, message, allow_empty_value)
            })
        });
    }

    fn body_parameter(&mut self, p: &Map<String, Value>) {
        const M: &str = "BodyParameter";
        for (k, v) in p {
            match k.as_str() {
                "description" => self.str_value(1, v, M, k),
                "name" => self.str_value(2, v, M, k),
                "in" => self.str_value(3, v, M, k),
                "required" => self.bool_value(4, v, M, k),
                "schema" => self.object_value(5, v, M, k, Writer::schema),
                k if is_extension(k) => self.extension(6, k, v),
                _ => self.skip(M, k),
            }
        }
    }

    /// The four `*ParameterSubSchema` messages: `required = 1; in = 2; description = 3;
    /// name = 4`, then (query and formData only) `allow_empty_value = 5`, then the primitive
    /// fields from `type` on.
    fn non_body_parameter(&mut self, p: &Map<String, Value>, m: &str, allow_empty_value: bool) {
        let first = if allow_empty_value { 6 } else { 5 };
        for (k, v) in p {
            match k.as_str() {
                "required" => self.bool_value(1, v, m, k),
                "in" => self.str_value(2, v, m, k),
                "description" => self.str_value(3, v, m, k),
                "name" => self.str_value(4, v, m, k),
                "allowEmptyValue" if allow_empty_value => self.bool_value(5, v, m, k),
                _ => self.primitive_field(first, k, v, m),
            }
        }
    }

    /// `PrimitivesItems`, the `items` of a non-body parameter.
    fn primitives_items(&mut self, items: &Map<String, Value>) {
        for (k, v) in items {
            self.primitive_field(1, k, v, "PrimitivesItems");
        }
    }

    /// The run of fields that parameters and `PrimitivesItems` share, in this order from the
    /// field number `first`: type, format, items, collectionFormat, default, maximum,
    /// exclusiveMaximum, minimum, exclusiveMinimum, maxLength, minLength, pattern, maxItems,
    /// minItems, uniqueItems, enum, multipleOf, then the vendor extensions.
    fn primitive_field(&mut self, first: u32, k: &str, v: &Value, m: &str) {
        let n = |offset: u32| first + offset;
        match k {
            "type" => self.str_value(n(0), v, m, k),
            "format" => self.str_value(n(1), v, m, k),
            "items" => self.object_value(n(2), v, m, k, Writer::primitives_items),
            "collectionFormat" => self.str_value(n(3), v, m, k),
            "default" => self.any(n(4), v),
            "maximum" => self.double_value(n(5), v, m, k),
            "exclusiveMaximum" => self.bool_value(n(6), v, m, k),
            "minimum" => self.double_value(n(7), v, m, k),
            "exclusiveMinimum" => self.bool_value(n(8), v, m, k),
            "maxLength" => self.int_value(n(9), v, m, k),
            "minLength" => self.int_value(n(10), v, m, k),
            "pattern" => self.str_value(n(11), v, m, k),
            "maxItems" => self.int_value(n(12), v, m, k),
            "minItems" => self.int_value(n(13), v, m, k),
            "uniqueItems" => self.bool_value(n(14), v, m, k),
            "enum" => self.anys(n(15), v, m, k),
            "multipleOf" => self.double_value(n(16), v, m, k),
            k if is_extension(k) => self.extension(n(17), k, v),
            _ => self.skip(m, k),
        }
    }

    /// Each element of a JSON array as a repeated `Any`.
    fn anys(&mut self, field: u32, v: &Value, message: &str, key: &str) {
        match v {
            Value::Array(items) => items.iter().for_each(|item| self.any(field, item)),
            _ => self.skip(message, key),
        }
    }

    /// `Responses { repeated NamedResponseValue response_code = 1; repeated NamedAny
    /// vendor_extension = 2 }`; `ResponseValue { oneof { Response response = 1; JsonReference
    /// json_reference = 2 } }`.
    fn responses(&mut self, responses: &Map<String, Value>) {
        for (k, v) in responses {
            if is_extension(k) {
                self.extension(2, k, v);
                continue;
            }
            let Value::Object(r) = v else {
                self.skip("Responses", k);
                continue;
            };
            self.message(1, |w| {
                w.string(1, k);
                w.message(2, |w| {
                    if r.contains_key("$ref") {
                        w.message(2, |w| w.json_reference(r));
                    } else {
                        w.message(1, |w| w.response(r));
                    }
                });
            });
        }
    }

    fn response(&mut self, r: &Map<String, Value>) {
        const M: &str = "Response";
        for (k, v) in r {
            match k.as_str() {
                "description" => self.str_value(1, v, M, k),
                // SchemaItem { oneof { Schema schema = 1; FileSchema file_schema = 2 } }
                "schema" if v.get("type") == Some(&Value::from("file")) => self.skip(M, k),
                "schema" => self.object_value(2, v, M, k, |w, s| w.message(1, |w| w.schema(s))),
                k if is_extension(k) => self.extension(5, k, v),
                _ => self.skip(M, k),
            }
        }
    }

    /// `NamedSchema { name = 1; Schema value = 2 }` for each entry, as `definitions` and
    /// `properties` are carried.
    fn named_schemas(&mut self, field: u32, schemas: &Map<String, Value>) {
        for (name, schema) in schemas {
            self.message(field, |w| {
                w.string(1, name);
                w.object_value(2, schema, "NamedSchema", name, Writer::schema);
            });
        }
    }

    fn schema(&mut self, s: &Map<String, Value>) {
        const M: &str = "Schema";
        for (k, v) in s {
            match k.as_str() {
                "$ref" => self.str_value(1, v, M, k),
                "format" => self.str_value(2, v, M, k),
                "title" => self.str_value(3, v, M, k),
                "description" => self.str_value(4, v, M, k),
                "default" => self.any(5, v),
                "multipleOf" => self.double_value(6, v, M, k),
                "maximum" => self.double_value(7, v, M, k),
                "exclusiveMaximum" => self.bool_value(8, v, M, k),
                "minimum" => self.double_value(9, v, M, k),
                "exclusiveMinimum" => self.bool_value(10, v, M, k),
                "maxLength" => self.int_value(11, v, M, k),
                "minLength" => self.int_value(12, v, M, k),
                "pattern" => self.str_value(13, v, M, k),
                "maxItems" => self.int_value(14, v, M, k),
                "minItems" => self.int_value(15, v, M, k),
                "uniqueItems" => self.bool_value(16, v, M, k),
                "maxProperties" => self.int_value(17, v, M, k),
                "minProperties" => self.int_value(18, v, M, k),
                "required" => self.strings_value(19, v, M, k),
                "enum" => self.anys(20, v, M, k),
                // AdditionalPropertiesItem { oneof { Schema schema = 1; bool boolean = 2 } }:
                // a oneof member is written even when false.
                "additionalProperties" => match v {
                    Value::Bool(b) => self.message(21, |w| {
                        w.key(2, VARINT);
                        w.varint(u64::from(*b));
                    }),
                    Value::Object(s) => self.message(21, |w| w.message(1, |w| w.schema(s))),
                    _ => self.skip(M, k),
                },
                // TypeItem { repeated string value = 1 }
                "type" => match v {
                    Value::String(t) => self.message(22, |w| w.string_always(1, t)),
                    Value::Array(_) => self.message(22, |w| w.strings_value(1, v, M, k)),
                    _ => self.skip(M, k),
                },
                // ItemsItem { repeated Schema schema = 1 }: one schema or a list of them.
                "items" => match v {
                    Value::Object(s) => self.message(23, |w| w.message(1, |w| w.schema(s))),
                    Value::Array(list) => self.message(23, |w| {
                        for s in list {
                            w.object_value(1, s, M, "items", Writer::schema);
                        }
                    }),
                    _ => self.skip(M, k),
                },
                "allOf" => match v {
                    Value::Array(list) => {
                        for s in list {
                            self.object_value(24, s, M, k, Writer::schema);
                        }
                    }
                    _ => self.skip(M, k),
                },
                // Properties { repeated NamedSchema additional_properties = 1 }
                "properties" => self.object_value(25, v, M, k, |w, p| w.named_schemas(1, p)),
                "discriminator" => self.str_value(26, v, M, k),
                "readOnly" => self.bool_value(27, v, M, k),
                "externalDocs" => self.object_value(29, v, M, k, Writer::external_docs),
                "example" => self.any(30, v),
                k if is_extension(k) => self.extension(31, k, v),
                _ => self.skip(M, k),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message;
    use serde_json::json;
    use std::collections::{BTreeMap, BTreeSet};

    /// The parts of gnostic's messages the tests read, declared independently with prost.
    mod gnostic {
        #[derive(Clone, PartialEq, prost::Message)]
        pub struct Document {
            #[prost(string, tag = "1")]
            pub swagger: String,
            #[prost(message, optional, tag = "2")]
            pub info: Option<Info>,
            #[prost(message, optional, tag = "8")]
            pub paths: Option<Paths>,
            #[prost(message, optional, tag = "9")]
            pub definitions: Option<Definitions>,
        }
        #[derive(Clone, PartialEq, prost::Message)]
        pub struct Info {
            #[prost(string, tag = "1")]
            pub title: String,
            #[prost(string, tag = "2")]
            pub version: String,
        }
        #[derive(Clone, PartialEq, prost::Message)]
        pub struct Paths {
            #[prost(message, repeated, tag = "2")]
            pub path: Vec<NamedPathItem>,
        }
        #[derive(Clone, PartialEq, prost::Message)]
        pub struct NamedPathItem {
            #[prost(string, tag = "1")]
            pub name: String,
            #[prost(message, optional, tag = "2")]
            pub value: Option<PathItem>,
        }
        #[derive(Clone, PartialEq, prost::Message)]
        pub struct PathItem {
            #[prost(message, optional, tag = "2")]
            pub get: Option<Operation>,
            #[prost(message, optional, tag = "8")]
            pub patch: Option<Operation>,
            #[prost(message, repeated, tag = "9")]
            pub parameters: Vec<ParametersItem>,
        }
        #[derive(Clone, PartialEq, prost::Message)]
        pub struct Operation {
            #[prost(string, tag = "5")]
            pub operation_id: String,
            #[prost(message, repeated, tag = "8")]
            pub parameters: Vec<ParametersItem>,
            #[prost(message, optional, tag = "9")]
            pub responses: Option<Responses>,
            #[prost(message, repeated, tag = "13")]
            pub vendor_extension: Vec<NamedAny>,
        }
        #[derive(Clone, PartialEq, prost::Message)]
        pub struct ParametersItem {
            #[prost(message, optional, tag = "1")]
            pub parameter: Option<Parameter>,
        }
        #[derive(Clone, PartialEq, prost::Message)]
        pub struct Parameter {
            #[prost(message, optional, tag = "2")]
            pub non_body_parameter: Option<NonBodyParameter>,
        }
        #[derive(Clone, PartialEq, prost::Message)]
        pub struct NonBodyParameter {
            #[prost(message, optional, tag = "3")]
            pub query: Option<QueryParameterSubSchema>,
            #[prost(message, optional, tag = "4")]
            pub path: Option<PathParameterSubSchema>,
        }
        #[derive(Clone, PartialEq, prost::Message)]
        pub struct QueryParameterSubSchema {
            #[prost(string, tag = "2")]
            pub r#in: String,
            #[prost(string, tag = "4")]
            pub name: String,
            #[prost(string, tag = "6")]
            pub r#type: String,
            #[prost(bool, tag = "20")]
            pub unique_items: bool,
        }
        #[derive(Clone, PartialEq, prost::Message)]
        pub struct PathParameterSubSchema {
            #[prost(bool, tag = "1")]
            pub required: bool,
            #[prost(string, tag = "2")]
            pub r#in: String,
            #[prost(string, tag = "4")]
            pub name: String,
            #[prost(string, tag = "5")]
            pub r#type: String,
        }
        #[derive(Clone, PartialEq, prost::Message)]
        pub struct Responses {
            #[prost(message, repeated, tag = "1")]
            pub response_code: Vec<NamedResponseValue>,
        }
        #[derive(Clone, PartialEq, prost::Message)]
        pub struct NamedResponseValue {
            #[prost(string, tag = "1")]
            pub name: String,
            #[prost(message, optional, tag = "2")]
            pub value: Option<ResponseValue>,
        }
        #[derive(Clone, PartialEq, prost::Message)]
        pub struct ResponseValue {
            #[prost(message, optional, tag = "1")]
            pub response: Option<Response>,
        }
        #[derive(Clone, PartialEq, prost::Message)]
        pub struct Response {
            #[prost(string, tag = "1")]
            pub description: String,
            #[prost(message, optional, tag = "2")]
            pub schema: Option<SchemaItem>,
        }
        #[derive(Clone, PartialEq, prost::Message)]
        pub struct SchemaItem {
            #[prost(message, optional, tag = "1")]
            pub schema: Option<Schema>,
        }
        #[derive(Clone, PartialEq, prost::Message)]
        pub struct Definitions {
            #[prost(message, repeated, tag = "1")]
            pub additional_properties: Vec<NamedSchema>,
        }
        #[derive(Clone, PartialEq, prost::Message)]
        pub struct NamedSchema {
            #[prost(string, tag = "1")]
            pub name: String,
            #[prost(message, optional, tag = "2")]
            pub value: Option<Schema>,
        }
        #[derive(Clone, PartialEq, prost::Message)]
        pub struct Schema {
            #[prost(string, tag = "1")]
            pub xref: String,
            #[prost(string, tag = "2")]
            pub format: String,
            #[prost(string, tag = "4")]
            pub description: String,
            #[prost(int64, tag = "11")]
            pub max_length: i64,
            #[prost(double, tag = "9")]
            pub minimum: f64,
            #[prost(string, repeated, tag = "19")]
            pub required: Vec<String>,
            #[prost(message, repeated, tag = "20")]
            pub r#enum: Vec<Any>,
            #[prost(message, optional, tag = "21")]
            pub additional_properties: Option<AdditionalPropertiesItem>,
            #[prost(message, optional, tag = "22")]
            pub r#type: Option<TypeItem>,
            #[prost(message, optional, tag = "23")]
            pub items: Option<ItemsItem>,
            #[prost(message, optional, tag = "25")]
            pub properties: Option<Properties>,
            #[prost(message, repeated, tag = "31")]
            pub vendor_extension: Vec<NamedAny>,
        }
        #[derive(Clone, PartialEq, prost::Message)]
        pub struct AdditionalPropertiesItem {
            #[prost(oneof = "Additional", tags = "1, 2")]
            pub oneof: Option<Additional>,
        }
        #[derive(Clone, PartialEq, prost::Oneof)]
        pub enum Additional {
            #[prost(message, boxed, tag = "1")]
            Schema(Box<Schema>),
            #[prost(bool, tag = "2")]
            Boolean(bool),
        }
        #[derive(Clone, PartialEq, prost::Message)]
        pub struct TypeItem {
            #[prost(string, repeated, tag = "1")]
            pub value: Vec<String>,
        }
        #[derive(Clone, PartialEq, prost::Message)]
        pub struct ItemsItem {
            #[prost(message, repeated, tag = "1")]
            pub schema: Vec<Schema>,
        }
        #[derive(Clone, PartialEq, prost::Message)]
        pub struct Properties {
            #[prost(message, repeated, tag = "1")]
            pub additional_properties: Vec<NamedSchema>,
        }
        #[derive(Clone, PartialEq, prost::Message)]
        pub struct NamedAny {
            #[prost(string, tag = "1")]
            pub name: String,
            #[prost(message, optional, tag = "2")]
            pub value: Option<Any>,
        }
        #[derive(Clone, PartialEq, prost::Message)]
        pub struct Any {
            #[prost(string, tag = "2")]
            pub yaml: String,
        }
    }

    fn yaml_of(extensions: &[gnostic::NamedAny], name: &str) -> Option<Value> {
        let e = extensions.iter().find(|e| e.name == name)?;
        Some(serde_yaml::from_str(&e.value.as_ref()?.yaml).unwrap())
    }

    fn served() -> gnostic::Document {
        gnostic::Document::decode(&crate::openapi::V2_PROTOBUF[..]).unwrap()
    }

    #[test]
    fn dao_document_converts_whole() {
        let encoded = document(&crate::openapi::v2_document());
        assert_eq!(encoded.skipped, Vec::<String>::new());
        assert_eq!(encoded.bytes, *crate::openapi::V2_PROTOBUF);
    }

    #[test]
    fn definitions_survive_the_round_trip() {
        let doc = served();
        assert_eq!(doc.swagger, "2.0");
        let info = doc.info.as_ref().unwrap();
        assert_eq!(
            (info.title.as_str(), info.version.as_str()),
            ("Kubernetes", "v1.33.0")
        );
        let defs: BTreeMap<&str, &gnostic::Schema> = doc
            .definitions
            .as_ref()
            .unwrap()
            .additional_properties
            .iter()
            .map(|d| (d.name.as_str(), d.value.as_ref().unwrap()))
            .collect();
        let deployment = defs["io.k8s.api.apps.v1.Deployment"];
        assert_eq!(
            yaml_of(
                &deployment.vendor_extension,
                "x-kubernetes-group-version-kind"
            ),
            Some(json!([{"group": "apps", "version": "v1", "kind": "Deployment"}]))
        );
        assert_eq!(deployment.r#type.as_ref().unwrap().value, ["object"]);
        fn props(s: &gnostic::Schema) -> BTreeMap<&str, &gnostic::Schema> {
            s.properties
                .as_ref()
                .unwrap()
                .additional_properties
                .iter()
                .map(|p| (p.name.as_str(), p.value.as_ref().unwrap()))
                .collect()
        }
        let spec = props(deployment)["spec"];
        assert_eq!(spec.xref, "#/definitions/io.k8s.api.apps.v1.DeploymentSpec");
        assert!(spec.description.contains("desired behavior"), "{spec:?}");
        assert!(spec.r#type.is_none());

        let deployment_spec = defs["io.k8s.api.apps.v1.DeploymentSpec"];
        assert_eq!(deployment_spec.required, ["selector", "template"]);
        let replicas = props(deployment_spec)["replicas"];
        assert_eq!(replicas.r#type.as_ref().unwrap().value, ["integer"]);
        assert_eq!(replicas.format, "int32");
        assert!(replicas.description.contains("Number of desired pods"));

        // An array of references, and a map of strings.
        let containers = props(defs["io.k8s.api.core.v1.PodSpec"])["containers"];
        assert_eq!(containers.r#type.as_ref().unwrap().value, ["array"]);
        let items = &containers.items.as_ref().unwrap().schema;
        assert_eq!(items.len(), 1);
        assert_eq!(items[0].xref, "#/definitions/io.k8s.api.core.v1.Container");
        let labels = props(defs["io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"])["labels"];
        match labels
            .additional_properties
            .as_ref()
            .unwrap()
            .oneof
            .as_ref()
            .unwrap()
        {
            gnostic::Additional::Schema(s) => {
                assert_eq!(s.r#type.as_ref().unwrap().value, ["string"])
            }
            other => panic!("{other:?}"),
        }
        // The core group is the empty string in the extension's YAML too.
        assert_eq!(
            yaml_of(
                &defs["io.k8s.api.core.v1.Pod"].vendor_extension,
                "x-kubernetes-group-version-kind"
            ),
            Some(json!([{"group": "", "version": "v1", "kind": "Pod"}]))
        );
    }

    /// kubectl 1.27's field validation check (cli-runtime's QueryParamVerifier): the first
    /// path whose PATCH carries the kind's GVK must list the `fieldValidation` query parameter.
    #[test]
    fn patch_operations_carry_gvk_and_field_validation() {
        let doc = served();
        let paths = &doc.paths.as_ref().unwrap().path;
        let patch = paths
            .iter()
            .filter_map(|p| p.value.as_ref()?.patch.as_ref())
            .find(|op| {
                yaml_of(&op.vendor_extension, "x-kubernetes-group-version-kind")
                    == Some(json!({"group": "apps", "version": "v1", "kind": "Deployment"}))
            })
            .expect("a PATCH of apps/v1 Deployment");
        let queries: Vec<&str> = patch
            .parameters
            .iter()
            .filter_map(|p| {
                p.parameter
                    .as_ref()?
                    .non_body_parameter
                    .as_ref()?
                    .query
                    .as_ref()
            })
            .map(|q| {
                assert_eq!((q.r#in.as_str(), q.r#type.as_str()), ("query", "string"));
                q.name.as_str()
            })
            .collect();
        assert!(queries.contains(&"fieldValidation"), "{queries:?}");
        assert_eq!(
            yaml_of(&patch.vendor_extension, "x-kubernetes-action"),
            Some(json!("patch"))
        );
        let item = paths
            .iter()
            .find(|p| p.name == "/api/v1/namespaces/{namespace}/pods/{name}")
            .and_then(|p| p.value.as_ref())
            .unwrap();
        let name = item.parameters[0]
            .parameter
            .as_ref()
            .and_then(|p| p.non_body_parameter.as_ref()?.path.as_ref())
            .unwrap();
        assert_eq!(
            (
                name.required,
                name.r#in.as_str(),
                name.name.as_str(),
                name.r#type.as_str()
            ),
            (true, "path", "name", "string")
        );
        let get = item.get.as_ref().unwrap();
        assert_eq!(get.operation_id, "getPodNamespaced");
        let ok = get
            .responses
            .as_ref()
            .unwrap()
            .response_code
            .iter()
            .find(|r| r.name == "200");
        let ok = ok
            .and_then(|r| r.value.as_ref()?.response.as_ref())
            .unwrap();
        assert_eq!(ok.description, "OK");
        assert_eq!(
            ok.schema.as_ref().unwrap().schema.as_ref().unwrap().xref,
            "#/definitions/io.k8s.api.core.v1.Pod"
        );
    }

    /// Every definition passes the checks kube-openapi's `proto.NewOpenAPIData` makes, which
    /// kubectl 1.27 runs over the whole document before `explain` or validation: a reference
    /// has no type or properties and resolves; at most one type; an array has exactly one item
    /// schema; a primitive type is one of the four.
    #[test]
    fn every_definition_parses_as_kube_openapi_reads_it() {
        fn check(s: &gnostic::Schema, names: &BTreeSet<&str>, at: &str) {
            if !s.xref.is_empty() {
                assert!(s.properties.is_none() && s.r#type.is_none(), "{at}: {s:?}");
                let name = s
                    .xref
                    .strip_prefix("#/definitions/")
                    .unwrap_or_else(|| panic!("{at}"));
                assert!(names.contains(name), "{at}: {name} does not resolve");
                return;
            }
            let types = s
                .r#type
                .as_ref()
                .map(|t| t.value.as_slice())
                .unwrap_or_default();
            assert!(types.len() <= 1, "{at}: {types:?}");
            let child = |p: &str| format!("{at}.{p}");
            match types.first().map(String::as_str) {
                None | Some("object") => {
                    for p in s.properties.iter().flat_map(|p| &p.additional_properties) {
                        check(p.value.as_ref().unwrap(), names, &child(&p.name));
                    }
                    if let Some(gnostic::Additional::Schema(a)) = s
                        .additional_properties
                        .as_ref()
                        .and_then(|a| a.oneof.as_ref())
                    {
                        check(a, names, &child("*"));
                    }
                }
                Some("array") => {
                    let items = &s.items.as_ref().unwrap_or_else(|| panic!("{at}")).schema;
                    assert_eq!(items.len(), 1, "{at}");
                    check(&items[0], names, &child("[]"));
                }
                Some(t) => assert!(
                    ["string", "number", "integer", "boolean"].contains(&t),
                    "{at}: {t}"
                ),
            }
        }
        let doc = served();
        let defs = &doc.definitions.as_ref().unwrap().additional_properties;
        let names: BTreeSet<&str> = defs.iter().map(|d| d.name.as_str()).collect();
        assert!(names.len() > 100, "{}", names.len());
        for d in defs {
            check(d.value.as_ref().unwrap(), &names, &d.name);
        }
    }

    #[test]
    fn scalars_oneofs_and_lists() {
        let doc = json!({"definitions": {"A": {
            "type": ["string"],
            "maxLength": 63,
            "minimum": -1.5,
            "enum": ["a", 1],
            "additionalProperties": false,
            "items": [{"type": "string"}, {"type": "integer"}],
        }}});
        let encoded = document(&doc);
        assert!(encoded.skipped.is_empty(), "{:?}", encoded.skipped);
        let doc = gnostic::Document::decode(&encoded.bytes[..]).unwrap();
        let a = doc.definitions.unwrap().additional_properties[0]
            .value
            .clone()
            .unwrap();
        assert_eq!(a.max_length, 63);
        assert_eq!(a.minimum, -1.5);
        let enums: Vec<Value> = a
            .r#enum
            .iter()
            .map(|e| serde_yaml::from_str(&e.yaml).unwrap())
            .collect();
        assert_eq!(enums, [json!("a"), json!(1)]);
        assert_eq!(
            a.additional_properties.unwrap().oneof,
            Some(gnostic::Additional::Boolean(false))
        );
        assert_eq!(a.items.unwrap().schema.len(), 2);
    }

    #[test]
    fn varints_and_lengths() {
        let mut w = Writer::default();
        w.varint(300);
        assert_eq!(w.buf, [0xac, 0x02]);
        let mut w = Writer::default();
        w.int64(1, -1);
        assert_eq!(w.buf.len(), 11, "a negative int64 is a ten-byte varint");
        // A message longer than 127 bytes gets a two-byte length.
        let mut w = Writer::default();
        w.message(9, |w| w.string(1, &"a".repeat(200)));
        assert_eq!(&w.buf[..3], &[9 << 3 | 2, 0xcb, 0x01]);
        assert_eq!(w.buf.len(), 3 + 203);
        // An empty message is still there.
        let mut w = Writer::default();
        w.message(25, |_| {});
        assert_eq!(w.buf, [0xca, 0x01, 0x00]);
    }

    #[test]
    fn unknown_keys_are_reported() {
        let doc = json!({
            "swagger": "2.0",
            "securityDefinitions": {},
            "definitions": {"A": {"type": "object", "nullable": true, "properties": {"b": {"oneOf": []}}}},
        });
        let mut skipped = document(&doc).skipped;
        skipped.sort();
        assert_eq!(
            skipped,
            [
                "Document.securityDefinitions",
                "Schema.nullable",
                "Schema.oneOf"
            ]
        );
    }
}
