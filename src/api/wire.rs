//! `Verify`'s response as umpire sends it: the image the caller asked by, then the rest of the
//! verdict already encoded (kept in the verdict cache beside the verdict, see
//! `Verdict::wire`), so that a cached answer is sent without rebuilding or re-encoding it. On the
//! wire it is an ordinary `umpire.v1.VerifyResponse`: protobuf fields may come in any order.

use bytes::{Buf, BufMut, Bytes};
use prost::encoding::{DecodeContext, WireType};

/// Field number of `VerifyResponse.image`.
const IMAGE: u32 = 7;

#[derive(Clone, Debug, Default, PartialEq)]
pub struct VerifyResponseWire {
    pub image: String,
    /// Every other field, encoded.
    pub rest: Bytes,
}

impl prost::Message for VerifyResponseWire {
    fn encode_raw(&self, buf: &mut impl BufMut) {
        if !self.image.is_empty() {
            prost::encoding::string::encode(IMAGE, &self.image, buf);
        }
        buf.put_slice(&self.rest);
    }

    fn merge_field(
        &mut self,
        tag: u32,
        wire_type: WireType,
        buf: &mut impl Buf,
        ctx: DecodeContext,
    ) -> Result<(), prost::DecodeError> {
        // umpire only sends it; reading one back keeps the image and skips the rest.
        if tag == IMAGE {
            prost::encoding::string::merge(wire_type, &mut self.image, buf, ctx)
        } else {
            prost::encoding::skip_field(wire_type, tag, buf, ctx)
        }
    }

    fn encoded_len(&self) -> usize {
        let image = if self.image.is_empty() {
            0
        } else {
            prost::encoding::string::encoded_len(IMAGE, &self.image)
        };
        image + self.rest.len()
    }

    fn clear(&mut self) {
        self.image.clear();
        self.rest = Bytes::new();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::verdict::{Code, Finding, Verdict};
    use prost::Message as _;

    #[test]
    fn it_decodes_as_the_response_the_verdict_makes() {
        let verdict = Verdict {
            warnings: vec![Finding::new(Code::NoSignatures, "w").with_policy("trial")],
            ..Verdict::allow(
                "asked",
                vec![Finding::new(Code::Satisfied, "ok").with_authority("k")],
            )
            .for_digest("sha256:ab", "application/vnd.oci.image.index.v1+json")
            .under_policies(["prod"])
        };
        let wire = VerifyResponseWire {
            image: "registry.example/app:v1".into(),
            rest: verdict.wire(),
        };
        let decoded =
            crate::proto::VerifyResponse::decode(wire.encode_to_vec().as_slice()).unwrap();
        let expected =
            crate::proto::VerifyResponse::from(verdict.for_image("registry.example/app:v1"));
        assert_eq!(decoded, expected);
    }
}
