/// An enum over a numeric wire field that keeps values it has no name for, so that whatever is
/// parsed prints and emits back unchanged.
macro_rules! enum_with_unknown {
    (
        $(#[$enum_attr:meta])*
        pub enum $name:ident($ty:ty) {
            $(
                $(#[$variant_attr:meta])*
                $variant:ident = $value:expr
            ),+ $(,)?
        }
    ) => {
        $(#[$enum_attr])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub enum $name {
            $(
                $(#[$variant_attr])*
                $variant
            ),*,
            /// A value without a name here, kept as it was on the wire.
            Unknown($ty),
        }

        impl ::core::convert::From<$ty> for $name {
            #[inline]
            fn from(value: $ty) -> Self {
                match value {
                    $( $value => $name::$variant ),*,
                    other => $name::Unknown(other),
                }
            }
        }

        impl ::core::convert::From<$name> for $ty {
            #[inline]
            fn from(value: $name) -> Self {
                match value {
                    $( $name::$variant => $value ),*,
                    $name::Unknown(other) => other,
                }
            }
        }
    };
}

/// A view over a buffer of any `T: AsRef<[u8]>`: the struct and what every protocol's view has,
/// `new_unchecked`, `new_checked` (which calls the module's own `check_len`) and `into_inner`.
/// With `header_len: N`, also the `check_len` of a header of fixed length `N`.
macro_rules! view {
    ($(#[$attr:meta])* $name:ident) => {
        $(#[$attr])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub struct $name<T: AsRef<[u8]>> {
            buffer: T,
        }

        impl<T: AsRef<[u8]>> $name<T> {
            /// A view of `buffer` as it is: accessors may panic until `check_len` is `Ok`.
            pub const fn new_unchecked(buffer: T) -> Self {
                $name { buffer }
            }

            /// A view of `buffer` once `check_len` is `Ok`, after which no accessor panics.
            pub fn new_checked(buffer: T) -> $crate::Result<Self> {
                let p = Self::new_unchecked(buffer);
                p.check_len()?;
                Ok(p)
            }

            pub fn into_inner(self) -> T {
                self.buffer
            }
        }
    };
    ($(#[$attr:meta])* $name:ident, header_len: $len:expr) => {
        view!($(#[$attr])* $name);

        impl<T: AsRef<[u8]>> $name<T> {
            /// `Truncated` when the buffer ends before the header.
            pub fn check_len(&self) -> $crate::Result<()> {
                if self.buffer.as_ref().len() < $len {
                    Err($crate::Error::Truncated)
                } else {
                    Ok(())
                }
            }
        }
    };
}

/// The fields ICMP and ICMPv6 share (type, code, checksum, the second word with the echo
/// identifier and sequence number, the data), read and written alike; each module adds its
/// own checksum, which only ICMPv6 takes over a pseudo-header. Uses the module's `field`.
macro_rules! icmp_fields {
    ($name:ident, $message:ident) => {
        impl<T: AsRef<[u8]>> $name<T> {
            pub fn msg_type(&self) -> $message {
                $message::from(self.buffer.as_ref()[field::TYPE])
            }

            pub fn msg_code(&self) -> u8 {
                self.buffer.as_ref()[field::CODE]
            }

            pub fn checksum(&self) -> u16 {
                $crate::read_u16(self.buffer.as_ref(), field::CHECKSUM.start)
            }

            /// The second word, whose meaning depends on the type: echo id/seq, the next-hop
            /// MTU of "fragmentation needed" or "packet too big", the pointer of a parameter
            /// problem.
            pub fn rest_of_header(&self) -> u32 {
                $crate::read_u32(self.buffer.as_ref(), field::REST.start)
            }

            pub fn echo_ident(&self) -> u16 {
                $crate::read_u16(self.buffer.as_ref(), field::ECHO_IDENT.start)
            }

            pub fn echo_seq_no(&self) -> u16 {
                $crate::read_u16(self.buffer.as_ref(), field::ECHO_SEQNO.start)
            }

            /// Everything after the 8-byte header: echo data, or for errors the quoted packet.
            pub fn data(&self) -> &[u8] {
                &self.buffer.as_ref()[field::DATA..]
            }

            /// The quoted packet (IP header first) of an error message, `None` for other types.
            pub fn quoted(&self) -> Option<&[u8]> {
                self.msg_type().is_error().then(|| self.data())
            }
        }

        impl<'a, T: AsRef<[u8]> + ?Sized> $name<&'a T> {
            pub fn data_ref(&self) -> &'a [u8] {
                let d = self.buffer.as_ref();
                &d[field::DATA..]
            }
        }

        impl<T: AsRef<[u8]> + AsMut<[u8]>> $name<T> {
            pub fn set_msg_type(&mut self, t: $message) {
                self.buffer.as_mut()[field::TYPE] = t.into();
            }

            pub fn set_msg_code(&mut self, c: u8) {
                self.buffer.as_mut()[field::CODE] = c;
            }

            pub fn set_checksum(&mut self, v: u16) {
                $crate::write_u16(self.buffer.as_mut(), field::CHECKSUM.start, v);
            }

            pub fn set_rest_of_header(&mut self, v: u32) {
                $crate::write_u32(self.buffer.as_mut(), field::REST.start, v);
            }

            pub fn set_echo_ident(&mut self, v: u16) {
                $crate::write_u16(self.buffer.as_mut(), field::ECHO_IDENT.start, v);
            }

            pub fn set_echo_seq_no(&mut self, v: u16) {
                $crate::write_u16(self.buffer.as_mut(), field::ECHO_SEQNO.start, v);
            }

            pub fn data_mut(&mut self) -> &mut [u8] {
                &mut self.buffer.as_mut()[field::DATA..]
            }
        }
    };
}

/// The value type ICMP and ICMPv6 share: echo request and reply, errors quoting the offending
/// packet, other messages. Besides the enum, `parse_fields` (the value of a view whose length
/// and checksum are checked), `buffer_len` and `emit_fields` (everything but the checksum); each
/// module's own `parse` and `emit` add the checksum, which only ICMPv6 takes over a pseudo-header.
/// Uses the module's `HEADER_LEN`.
macro_rules! icmp_repr {
    (
        $(#[$attr:meta])*
        $name:ident, $packet:ident, $message:ident,
        $(#[$error_attr:meta])*
        Error
    ) => {
        $(#[$attr])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub enum $name<'a> {
            EchoRequest {
                ident: u16,
                seq_no: u16,
                data: &'a [u8],
            },
            EchoReply {
                ident: u16,
                seq_no: u16,
                data: &'a [u8],
            },
            $(#[$error_attr])*
            Error {
                msg_type: $message,
                code: u8,
                rest: u32,
                quoted: &'a [u8],
            },
            Other {
                msg_type: $message,
                code: u8,
                rest: u32,
                data: &'a [u8],
            },
        }

        impl<'a> $name<'a> {
            /// The value of a message whose length and checksum have been checked.
            fn parse_fields<T: AsRef<[u8]> + ?Sized>(packet: &$packet<&'a T>) -> $name<'a> {
                let data = packet.data_ref();
                let (msg_type, code) = (packet.msg_type(), packet.msg_code());
                match msg_type {
                    $message::EchoRequest if code == 0 => $name::EchoRequest {
                        ident: packet.echo_ident(),
                        seq_no: packet.echo_seq_no(),
                        data,
                    },
                    $message::EchoReply if code == 0 => $name::EchoReply {
                        ident: packet.echo_ident(),
                        seq_no: packet.echo_seq_no(),
                        data,
                    },
                    t if t.is_error() => $name::Error {
                        msg_type,
                        code,
                        rest: packet.rest_of_header(),
                        quoted: data,
                    },
                    _ => $name::Other {
                        msg_type,
                        code,
                        rest: packet.rest_of_header(),
                        data,
                    },
                }
            }

            fn data(&self) -> &'a [u8] {
                match *self {
                    $name::EchoRequest { data, .. }
                    | $name::EchoReply { data, .. }
                    | $name::Other { data, .. } => data,
                    $name::Error { quoted, .. } => quoted,
                }
            }

            pub fn buffer_len(&self) -> usize {
                HEADER_LEN + self.data().len()
            }

            /// Writes the message but for its checksum.
            fn emit_fields<T: AsRef<[u8]> + AsMut<[u8]>>(&self, packet: &mut $packet<T>) {
                let (t, code, rest) = match *self {
                    $name::EchoRequest { ident, seq_no, .. } => (
                        $message::EchoRequest,
                        0,
                        (ident as u32) << 16 | seq_no as u32,
                    ),
                    $name::EchoReply { ident, seq_no, .. } => (
                        $message::EchoReply,
                        0,
                        (ident as u32) << 16 | seq_no as u32,
                    ),
                    $name::Error {
                        msg_type,
                        code,
                        rest,
                        ..
                    }
                    | $name::Other {
                        msg_type,
                        code,
                        rest,
                        ..
                    } => (msg_type, code, rest),
                };
                packet.set_msg_type(t);
                packet.set_msg_code(code);
                packet.set_rest_of_header(rest);
                let data = self.data();
                packet.data_mut()[..data.len()].copy_from_slice(data);
            }
        }
    };
}
