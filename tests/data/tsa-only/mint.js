// Mints a keyless DSSE bundle signed under a TSA-only Sigstore instance (no tlog, no CT log).
const crypto = require('crypto');
const fs = require('fs');
const { initializeCA, initializeTSA } = require('@sigstore/mock');
const { generateKeyPair } = require('@sigstore/mock/dist/util/key');

const b64 = (b) => Buffer.from(b).toString('base64');
const sha256 = (b) => crypto.createHash('sha256').update(b).digest();

(async () => {
  const out = process.argv[2];
  // Whole seconds: DER GeneralizedTime in the TSTInfo carries no fraction.
  const clock = new Date(Math.floor(Date.now() / 1000) * 1000 + 2000);
  const ca = await initializeCA(generateKeyPair('prime256v1'), undefined, clock);
  const tsa = await initializeTSA(generateKeyPair('prime256v1'), clock);

  // The image the statement is about: exact bytes the test pushes.
  const config = Buffer.from('{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}');
  const layer = Buffer.from('umpire github attestation fixture\n');
  const desc = (mediaType, b) => ({ mediaType, digest: 'sha256:' + sha256(b).toString('hex'), size: b.length });
  const manifest = Buffer.from(JSON.stringify({
    schemaVersion: 2,
    mediaType: 'application/vnd.oci.image.manifest.v1+json',
    config: desc('application/vnd.oci.image.config.v1+json', config),
    layers: [desc('application/vnd.oci.image.layer.v1.tar', layer)],
  }));
  const digest = sha256(manifest).toString('hex');

  const statement = Buffer.from(JSON.stringify({
    _type: 'https://in-toto.io/Statement/v1',
    subject: [{ name: 'ghcr.io/acme/app', digest: { sha256: digest } }],
    predicateType: 'https://slsa.dev/provenance/v1',
    predicate: {
      buildDefinition: { buildType: 'https://actions.github.io/buildtypes/workflow/v1', externalParameters: { workflow: { ref: 'refs/heads/main', repository: 'https://github.com/acme/app', path: '.github/workflows/release.yml' } } },
      runDetails: { builder: { id: 'https://github.com/actions/runner/github-hosted' } },
    },
  }));
  const payloadType = 'application/vnd.in-toto+json';
  const pae = Buffer.concat([Buffer.from(`DSSEv1 ${payloadType.length} ${payloadType} ${statement.length} `), statement]);

  const signer = generateKeyPair('prime256v1');
  const identity = 'https://github.com/acme/app/.github/workflows/release.yml@refs/heads/main';
  const issuer = 'https://token.actions.githubusercontent.com';
  const cert = await ca.issueCertificate({
    publicKey: signer.publicKey.export({ format: 'der', type: 'spki' }),
    subjectAltName: identity,
    extensions: [
      { oid: '1.3.6.1.4.1.57264.1.1', value: issuer, legacy: true },
      { oid: '1.3.6.1.4.1.57264.1.8', value: issuer },
    ],
  });
  const signature = crypto.sign('sha256', pae, signer.privateKey);
  const timestamp = await tsa.timestamp({
    artifactHash: sha256(signature),
    hashAlgorithmOID: '2.16.840.1.101.3.4.2.1',
    nonce: 1234,
    policyOID: '1.2.3.4',
    certReq: true,
  });

  const envelope = { payload: b64(statement), payloadType, signatures: [{ sig: b64(signature), keyid: '' }] };
  const material = (withTimestamp) => ({
    certificate: { rawBytes: b64(cert) },
    tlogEntries: [],
    timestampVerificationData: { rfc3161Timestamps: withTimestamp ? [{ signedTimestamp: b64(timestamp) }] : [] },
  });
  const bundle = (withTimestamp) => JSON.stringify({
    mediaType: 'application/vnd.dev.sigstore.bundle.v0.3+json',
    verificationMaterial: material(withTimestamp),
    dsseEnvelope: envelope,
  }, null, 1);
  const root = {
    mediaType: 'application/vnd.dev.sigstore.trustedroot+json;version=0.1',
    tlogs: [],
    certificateAuthorities: [{
      subject: { organization: 'umpire tests', commonName: 'tsa-only fulcio' },
      uri: 'https://fulcio.tsa-only.test',
      certChain: { certificates: [{ rawBytes: b64(ca.rootCertificate) }] },
      validFor: { start: '2020-01-01T00:00:00Z' },
    }],
    ctlogs: [],
    timestampAuthorities: [{
      subject: { organization: 'umpire tests', commonName: 'tsa-only tsa' },
      uri: 'https://tsa.tsa-only.test',
      certChain: { certificates: [{ rawBytes: b64(tsa.intCertificate) }, { rawBytes: b64(tsa.rootCertificate) }] },
      validFor: { start: '2020-01-01T00:00:00Z' },
    }],
  };
  fs.mkdirSync(out, { recursive: true });
  fs.writeFileSync(`${out}/bundle.sigstore.json`, bundle(true));
  fs.writeFileSync(`${out}/bundle-without-timestamp.sigstore.json`, bundle(false));
  fs.writeFileSync(`${out}/trusted_root.json`, JSON.stringify(root, null, 1));
  fs.writeFileSync(`${out}/config.json`, config);
  fs.writeFileSync(`${out}/layer`, layer);
  fs.writeFileSync(`${out}/manifest.json`, manifest);
  fs.writeFileSync(`${out}/identity`, identity);
  fs.writeFileSync(`${out}/issuer`, issuer);
  console.log('sha256:' + digest);
})();
