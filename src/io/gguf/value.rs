//! Metadata values: the thirteen GGUF value types (`gguf_metadata_value_type`).

/// A value's type tag in the file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ValueType {
    U8 = 0,
    I8 = 1,
    U16 = 2,
    I16 = 3,
    U32 = 4,
    I32 = 5,
    F32 = 6,
    Bool = 7,
    String = 8,
    Array = 9,
    U64 = 10,
    I64 = 11,
    F64 = 12,
}

impl ValueType {
    const ALL: [ValueType; 13] = {
        use ValueType::*;
        [U8, I8, U16, I16, U32, I32, F32, Bool, String, Array, U64, I64, F64]
    };

    /// The type with tag `id` in the file, if there is one.
    pub fn from_id(id: u32) -> Option<Self> {
        Self::ALL.get(id as usize).copied()
    }

    /// The fewest bytes a value of this type takes (a string: its length).
    pub(super) fn min_size(self) -> usize {
        use ValueType::*;
        match self {
            U8 | I8 | Bool => 1,
            U16 | I16 => 2,
            U32 | I32 | F32 => 4,
            U64 | I64 | F64 | String => 8,
            Array => 12,
        }
    }

    /// `u32`, `string`, ...: for messages.
    pub fn name(self) -> &'static str {
        use ValueType::*;
        match self {
            U8 => "u8",
            I8 => "i8",
            U16 => "u16",
            I16 => "i16",
            U32 => "u32",
            I32 => "i32",
            F32 => "f32",
            Bool => "bool",
            String => "string",
            Array => "array",
            U64 => "u64",
            I64 => "i64",
            F64 => "f64",
        }
    }
}

/// A metadata value. Arrays hold values of one type, never arrays (as in ggml).
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    U8(u8),
    I8(i8),
    U16(u16),
    I16(i16),
    U32(u32),
    I32(i32),
    F32(f32),
    Bool(bool),
    String(String),
    /// The element type (kept for empty arrays) and the elements.
    Array(ValueType, Vec<Value>),
    U64(u64),
    I64(i64),
    F64(f64),
}

/// `From` for each scalar and for `Vec`s of it (an array of that type), and
/// `as_*` to read one back.
macro_rules! scalars {
    ($($t:ty => $variant:ident, $as:ident;)*) => {$(
        impl From<$t> for Value {
            fn from(x: $t) -> Value {
                Value::$variant(x)
            }
        }

        impl From<Vec<$t>> for Value {
            fn from(xs: Vec<$t>) -> Value {
                Value::Array(ValueType::$variant, xs.into_iter().map(Value::$variant).collect())
            }
        }

        impl Value {
            /// The value, if it is of this type.
            pub fn $as(&self) -> Option<$t> {
                match self {
                    Value::$variant(x) => Some(*x),
                    _ => None,
                }
            }
        }
    )*};
}

scalars! {
    u8 => U8, as_u8;
    i8 => I8, as_i8;
    u16 => U16, as_u16;
    i16 => I16, as_i16;
    u32 => U32, as_u32;
    i32 => I32, as_i32;
    f32 => F32, as_f32;
    bool => Bool, as_bool;
    u64 => U64, as_u64;
    i64 => I64, as_i64;
    f64 => F64, as_f64;
}

impl From<String> for Value {
    fn from(s: String) -> Value {
        Value::String(s)
    }
}

impl From<&str> for Value {
    fn from(s: &str) -> Value {
        Value::String(s.to_string())
    }
}

impl From<Vec<String>> for Value {
    fn from(xs: Vec<String>) -> Value {
        Value::Array(ValueType::String, xs.into_iter().map(Value::String).collect())
    }
}

impl From<Vec<&str>> for Value {
    fn from(xs: Vec<&str>) -> Value {
        xs.into_iter().map(str::to_string).collect::<Vec<_>>().into()
    }
}

impl Value {
    /// Its type tag.
    pub fn ty(&self) -> ValueType {
        match self {
            Value::U8(_) => ValueType::U8,
            Value::I8(_) => ValueType::I8,
            Value::U16(_) => ValueType::U16,
            Value::I16(_) => ValueType::I16,
            Value::U32(_) => ValueType::U32,
            Value::I32(_) => ValueType::I32,
            Value::F32(_) => ValueType::F32,
            Value::Bool(_) => ValueType::Bool,
            Value::String(_) => ValueType::String,
            Value::Array(..) => ValueType::Array,
            Value::U64(_) => ValueType::U64,
            Value::I64(_) => ValueType::I64,
            Value::F64(_) => ValueType::F64,
        }
    }

    /// `u32`, `array of string`, ...: for messages.
    pub fn type_name(&self) -> String {
        match self {
            Value::Array(ty, _) => format!("array of {}", ty.name()),
            v => v.ty().name().to_string(),
        }
    }

    /// The string, if this is one.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::String(s) => Some(s),
            _ => None,
        }
    }

    /// The elements, if this is an array of `ty`.
    pub fn as_array(&self, ty: ValueType) -> Option<&[Value]> {
        match self {
            Value::Array(t, items) if *t == ty => Some(items),
            _ => None,
        }
    }
}
