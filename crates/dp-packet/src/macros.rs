//! Helpers shared by the protocol modules.

/// Declares a newtype over a wire integer whose known values are associated constants.
///
/// Unknown values stay representable (a packet with an odd EtherType is still forwarded), and `Debug`
/// prints the constant's name when there is one.
macro_rules! wire_enum {
    (
        $(#[$meta:meta])*
        pub struct $name:ident($ty:ty) {
            $( $(#[$cmeta:meta])* $konst:ident = $val:expr, )*
        }
    ) => {
        $(#[$meta])*
        #[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
        pub struct $name(pub $ty);

        impl $name {
            $( $(#[$cmeta])* pub const $konst: $name = $name($val); )*

            /// The constant's name, if the value is a known one.
            pub fn name(self) -> Option<&'static str> {
                match self {
                    $( Self::$konst => Some(stringify!($konst)), )*
                    _ => None,
                }
            }
        }

        impl core::fmt::Debug for $name {
            fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
                match self.name() {
                    Some(name) => write!(f, "{}::{}", stringify!($name), name),
                    None => write!(f, "{}({:#x})", stringify!($name), self.0),
                }
            }
        }

        impl From<$ty> for $name {
            fn from(value: $ty) -> Self {
                $name(value)
            }
        }

        impl From<$name> for $ty {
            fn from(value: $name) -> Self {
                value.0
            }
        }
    };
}

/// Declares accessors that return parts of the buffer, for views over `&'a T` and over `&mut T`.
///
/// Over `&'a T` the results borrow the *buffer* for `'a`, not the view, so nested views can be returned
/// from a function (`Ipv4Packet::new_checked(eth.payload())` outliving `eth`), as in smoltcp. Over
/// `&mut T` they borrow the view. Write the return type with `'a`; views over owned buffers (e.g. a
/// `Vec`) get these accessors by viewing `&buf[..]` instead.
macro_rules! slice_accessors {
    (
        $view:ident {
            $(
                $(#[$meta:meta])*
                pub fn $name:ident(&$s:ident $(, $arg:ident : $argty:ty)* ) -> $ret:ty $body:block
            )*
        }
    ) => {
        impl<'a, T: AsRef<[u8]> + ?Sized> $view<&'a T> {
            $(
                $(#[$meta])*
                pub fn $name(&$s $(, $arg: $argty)*) -> $ret $body
            )*
        }

        impl<'b, T: AsRef<[u8]> + AsMut<[u8]> + ?Sized> $view<&'b mut T> {
            $(
                $(#[$meta])*
                pub fn $name<'a>(&'a $s $(, $arg: $argty)*) -> $ret $body
            )*
        }
    };
}
