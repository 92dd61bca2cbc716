//! The declaration macro for method structs.
//!
//! A method is declared once, with its ids, its spec name and its arguments in wire order; the
//! macro derives the struct, its `Default` (the spec's default values), the argument decoder and
//! the argument writer from that one list, so the three cannot drift apart. Reserved arguments
//! (AMQP 0-9-1 marks them `reserved-1`, `reserved-2`; RabbitMQ's JSON still calls them `ticket`,
//! `insist`, `known-hosts`, ...) are listed separately: they are written as zero or empty, read
//! and ignored, and are not struct fields. In AMQP 0-9-1 they only ever come first or last.
//!
//! ```text
//! amqp_method! {
//!     /// doc
//!     BasicPublish(60, 40, "basic.publish", content)   // ids, name, carries content
//!     reserved_before(short)                           // reserved-1, the old access ticket
//!     {
//!         /// doc
//!         exchange: ShortString [shortstr],            // field: type [wire codec]
//!         mandatory: bool [bit, default = false],      // optional spec default
//!     }
//!     reserved_after()                                 // optional
//! }
//! ```

/// The default of a field: the spec's `default-value` if one is given, else the type's default.
macro_rules! default_value {
    () => {
        Default::default()
    };
    ($e:expr) => {
        $e
    };
}

/// Whether a method carries content (a header frame and body frames follow it).
macro_rules! has_content {
    () => {
        false
    };
    (content) => {
        true
    };
}

macro_rules! amqp_method {
    (
        $(#[$doc:meta])*
        $name:ident($class:literal, $method:literal, $text:literal $(, $content:ident)?)
        $(reserved_before($($before:ident),*))?
        {
            $(
                $(#[$fdoc:meta])*
                $field:ident : $ty:ty [$codec:ident $(, default = $default:expr)?]
            ),* $(,)?
        }
        $(reserved_after($($after:ident),*))?
    ) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq)]
        pub struct $name {
            $( $(#[$fdoc])* pub $field: $ty, )*
        }

        #[allow(clippy::derivable_impls)]
        impl Default for $name {
            fn default() -> Self {
                $name { $( $field: default_value!($($default)?), )* }
            }
        }

        impl $name {
            #[doc = concat!("Class id of `", $text, "`.")]
            pub const CLASS_ID: u16 = $class;
            #[doc = concat!("Method id of `", $text, "` within its class.")]
            pub const METHOD_ID: u16 = $method;
            /// The spec's name, `class.method`.
            pub const NAME: &'static str = $text;
            /// True if a content header and body follow this method.
            pub const HAS_CONTENT: bool = has_content!($($content)?);

            /// Decodes the arguments (the method frame payload after the class and method ids).
            #[allow(unused_mut)]
            pub(crate) fn decode_args(
                args: bytes::Bytes,
            ) -> Result<Self, crate::error::WireError> {
                let mut r = crate::method::args::ArgReader::new(args);
                $($( let _ = r.$before()?; )*)?
                // Struct expressions evaluate their fields in the order written: wire order.
                let m = $name { $( $field: r.$codec()?, )* };
                $($( let _ = r.$after()?; )*)?
                r.finish()?;
                Ok(m)
            }

            /// Writes (or counts) the arguments.
            pub(crate) fn write_args<S: crate::method::args::ArgSink>(&self, s: &mut S) {
                $($( s.$before(&Default::default()); )*)?
                $( s.$codec(&self.$field); )*
                $($( s.$after(&Default::default()); )*)?
                s.finish();
            }
        }

        impl From<$name> for crate::method::Method {
            fn from(m: $name) -> Self {
                crate::method::Method::$name(m)
            }
        }
    };
}
