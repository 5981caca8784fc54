// A line-oriented driver for LDK 0.1.2 (npm `lightningdevkit`, rust-lightning
// compiled to WASM): one JSON request per line on stdin, one JSON answer per
// line on stdout. tests/test_interop_ldk.py starts it and has LDK read what
// asyncpay builds and build what asyncpay must read. Bytes travel as hex.
//
// Keys: LDK's own KeysManager from a 32-byte seed the test chooses; `node`
// tells the test the node secret, so either side can act as that node.
//
// Limits of the 0.1 bindings, found here (see docs/compatibility.md): builder
// setters (description, amount, path, payer_note...) are lost (the binding
// passes a copy, or consumes the builder), so LDK-built offers carry only
// metadata and the issuer id and LDK-built requests only what the offer
// implies; builders returned inside a Result are borrowed and cannot be
// built (see `owned`); an unsigned BOLT 12 invoice cannot be signed through
// the bindings, so `respond` appends the signature record that LDK's
// NodeSigner computed over it; OffersMessage's onion contents report a
// corrupt TLV type (see `contents`); a blinded payment path has no write()
// (see `pathJson`). A panic inside LDK comes back as an error answer
// (RuntimeError) or ends the driver; either fails the test.

import * as fs from 'fs';
import * as readline from 'readline';
import * as ldk from 'lightningdevkit';
import { CommonBase } from 'lightningdevkit/structs/CommonBase.mjs';

// The bindings print a banner on load: keep stdout for answers only.
console.log = (...args) => console.error(...args);
const out = (obj) => process.stdout.write(JSON.stringify(obj) + '\n');

const wasm = new URL('./node_modules/lightningdevkit/liblightningjs.wasm', import.meta.url);
await ldk.initializeWasmFromBinary(fs.readFileSync(wasm));

const hex = (b) => Buffer.from(b).toString('hex');
const bin = (h) => new Uint8Array(Buffer.from(h, 'hex'));
const str = (s) => (s === null || s === undefined ? null : s.to_str());
const opt = (o) => (o instanceof ldk.Option_u64Z_Some ? Number(o.some) : null);

class Fail extends Error {}
function ok(result, what) {
  if (!result.is_ok()) {
    const detail = result.err === undefined ? '' : `: ${describe(result.err)}`;
    throw new Fail(`${what} failed${detail}`);
  }
  return result.res;
}
function describe(err) {
  if (err === null || err === undefined) return 'error';
  if (typeof err === 'number') return `code ${err}`;
  if (err.constructor && err.constructor.name) return err.constructor.name;
  return String(err);
}

const keys = new Map();
function keysFor(seed) {
  if (!keys.has(seed)) keys.set(seed, ldk.KeysManager.constructor_new(bin(seed), 1n, 0));
  return keys.get(seed);
}
const nodeId = (km) => ok(km.as_NodeSigner().get_node_id(ldk.Recipient.LDKRecipient_Node), 'get_node_id');

const logger = ldk.Logger.new_impl({ log: (record) => console.error(`ldk: ${record.get_args()}`) });
const noLookup = ldk.NodeIdLookUp.new_impl({ next_node_id: () => new Uint8Array(33) });

// LDK 0.1 knows no async-payments message without the `async_payments` cfg:
// types 72 and 74 reach the custom handler, which keeps their bytes.
function rawContents(type, bytes) {
  return ldk.OnionMessageContents.new_impl({
    tlv_type: () => BigInt(type),
    msg_type: () => `tlv ${type}`,
    write: () => bytes,
    debug_str: () => `tlv ${type}`,
  });
}
const customHandler = ldk.CustomOnionMessageHandler.new_impl({
  handle_custom_message: () => ldk.Option_C2Tuple_OnionMessageContentsResponseInstructionZZ.constructor_none(),
  read_custom_message: (type, buffer) => ldk.Result_COption_OnionMessageContentsZDecodeErrorZ.constructor_ok(
    ldk.Option_OnionMessageContentsZ.constructor_some(rawContents(type, buffer))),
  release_pending_custom_messages: () => [],
});

// "block x tx x output/direction", as asyncpay's IntroductionNode.describe.
function scidDir(intro) {
  const scid = intro._1;
  const dir = intro._0 === ldk.Direction.LDKDirection_NodeOne ? 0 : 1;
  return `${scid >> 40n}x${(scid >> 16n) & 0xFFFFFFn}x${scid & 0xFFFFn}/${dir}`;
}
function pathJson(p) {
  const intro = p.introduction_node();
  const hops = p.blinded_hops();
  // A BlindedPaymentPath has no write() in the bindings: its bytes are put
  // together here from LDK's parts (each hop by LDK's BlindedHop::write).
  const bytes = p.write ? p.write() : Buffer.concat([
    Buffer.from(intro.node_id), Buffer.from(p.blinding_point()), Buffer.from([hops.length]),
    ...hops.map((h) => Buffer.from(h.write()))]);
  return {
    hex: hex(bytes),
    introduction_node: intro instanceof ldk.IntroductionNode_NodeId ? hex(intro.node_id) : scidDir(intro),
    blinding_point: hex(p.blinding_point()),
    hops: hops.map((h) => ({
      blinded_node_id: hex(h.get_blinded_node_id()), encrypted_payload: hex(h.get_encrypted_payload()),
    })),
  };
}
function amount(a) {
  if (a instanceof ldk.Option_AmountZ_Some && a.some instanceof ldk.Amount_Bitcoin) return Number(a.some.amount_msats);
  return null;
}
// An invoice gives the offer's chains as an option (absent: bitcoin).
function chainsOf(c) {
  return c instanceof ldk.Option_CVec_ThirtyTwoBytesZZ_Some ? c.some.map(hex) : null;
}
function offerFields(o) {
  const md = o.metadata();
  return {
    chains: o.chains ? o.chains().map(hex) : chainsOf(o.offer_chains()),
    metadata: md instanceof ldk.Option_CVec_u8ZZ_Some ? hex(md.some) : null,
    amount_msats: amount(o.amount()),
    description: str(o.description()),
    absolute_expiry: opt(o.absolute_expiry()),
    issuer: str(o.issuer()),
    paths: (o.paths ? o.paths() : o.message_paths()).map(pathJson),
    issuer_signing_pubkey: o.issuer_signing_pubkey() ? hex(o.issuer_signing_pubkey()) : null,
  };
}
function invreqFields(r) {
  return {
    ...offerFields(r),
    payer_metadata: hex(r.payer_metadata()),
    chain: hex(r.chain()),
    amount_msats: opt(r.amount_msats()),
    offer_amount_msats: amount(r.amount()),
    quantity: opt(r.quantity()),
    payer_signing_pubkey: hex(r.payer_signing_pubkey()),
    payer_note: str(r.payer_note()),
    signature: hex(r.signature()),
  };
}
function readOffer(req) {
  const offer = req.bech32 !== undefined
    ? ok(ldk.Offer.constructor_from_str(req.bech32), 'Offer::from_str')
    : ok(ldk.Offer.constructor_read(bin(req.hex)), 'Offer::read');
  return offer;
}
const readInvreq = (h) => ok(ldk.InvoiceRequest.constructor_read(bin(h)), 'InvoiceRequest::read');
const readInvoice = (h) => ok(ldk.Bolt12Invoice.constructor_read(bin(h)), 'Bolt12Invoice::read');
const readPath = (h) => ok(ldk.BlindedMessagePath.constructor_read(bin(h)), 'BlindedMessagePath::read');
// A builder inside a Result is handed out borrowed (no clone exists) and its
// build consumes it: move it out by hand. The Result is never freed (a leak
// in a short-lived process), so the builder is freed exactly once, by build.
// Owned pointers carry bit 32 in these bindings.
function owned(result, cls, what) {
  const ptr = ok(result, what).ptr;
  CommonBase.set_null_skip_free(result);
  return new cls(null, ptr | (1n << 32n));
}
function consumed(builder) {
  CommonBase.set_null_skip_free(builder);
}
const nonceOf = (h) => ok(ldk.Nonce.constructor_read(bin(h)), 'Nonce::read');

// OffersMessage's own OnionMessageContents reports a corrupt TLV type in these
// bindings (a pointer in the upper bits of the u64): offers messages go
// through rawContents with their BOLT 4 type and LDK's own serialization.
function contents(c) {
  switch (c.kind) {
    case 'invoice_request':
      return rawContents(64, readInvreq(c.hex).write());
    case 'invoice':
      return rawContents(66, readInvoice(c.hex).write());
    case 'invoice_error':
      return rawContents(68, ldk.OffersMessage.constructor_invoice_error(
        ldk.InvoiceError.constructor_from_string(c.message)).write());
    case 'held_htlc_available':
      return ldk.AsyncPaymentsMessage.constructor_held_htlc_available(ldk.HeldHtlcAvailable.constructor_new())
        .as_OnionMessageContents();
    case 'release_held_htlc':
      return ldk.ReleaseHeldHtlc.constructor_new().as_OnionMessageContents();
    default:
      throw new Fail(`no contents kind ${c.kind}`);
  }
}

function messageContext(spec, km) {
  if (!spec) return ldk.MessageContext.constructor_custom(new Uint8Array(0));
  if (spec.custom !== undefined) return ldk.MessageContext.constructor_custom(bin(spec.custom));
  if (spec.invoice_request_nonce !== undefined) {
    return ldk.MessageContext.constructor_offers(ldk.OffersContext.constructor_invoice_request(
      nonceOf(spec.invoice_request_nonce)));
  }
  if (spec.offers_outbound !== undefined) {
    const p = spec.offers_outbound;
    return ldk.MessageContext.constructor_offers(ldk.OffersContext.constructor_outbound_payment(
      bin(p.payment_id), nonceOf(p.nonce), bin(p.hmac)));
  }
  if (spec.outbound_payment !== undefined) {
    const p = spec.outbound_payment;
    return ldk.MessageContext.constructor_async_payments(ldk.AsyncPaymentsContext.constructor_outbound_payment(
      bin(p.payment_id), nonceOf(p.nonce), bin(p.hmac)));
  }
  throw new Fail(`no context ${JSON.stringify(spec)}`);
}

const ops = {
  node(req) {
    const km = keysFor(req.seed);
    return { secret: hex(km.get_node_secret_key()), node_id: hex(nodeId(km)) };
  },
  read_offer(req) {
    const o = readOffer(req);
    return { ...offerFields(o), hex: hex(o.write()), bech32: o.to_str(), offer_id: hex(o.id().get_a()) };
  },
  read_invoice_request(req) {
    const r = readInvreq(req.hex);
    return { ...invreqFields(r), hex: hex(r.write()) };
  },
  read_invoice(req) {
    const i = readInvoice(req.hex);
    return {
      ...invreqFields(i),
      offer_amount_msats: amount(i.amount()),
      message_paths: i.message_paths().map(pathJson),
      payment_paths: i.payment_paths().map((p) => ({ ...pathJson(p), payinfo: hex(p.get_payinfo().write()) })),
      created_at: Number(i.created_at()),
      relative_expiry: Number(i.relative_expiry()),
      payment_hash: hex(i.payment_hash()),
      amount_msats: Number(i.amount_msats()),
      signing_pubkey: hex(i.signing_pubkey()),
      signature: hex(i.signature()),
      hex: hex(i.write()),
    };
  },
  read_invoice_error(req) {
    const e = ok(ldk.InvoiceError.constructor_read(bin(req.hex)), 'InvoiceError::read');
    return { message: e.get_message().get_a(), text: e.to_str(), hex: hex(e.write()) };
  },
  write_invoice_error(req) {
    // What LDK puts in onion TLV 68 (OffersMessage's serialization).
    const e = ldk.InvoiceError.constructor_from_string(req.message);
    return { hex: hex(ldk.OffersMessage.constructor_invoice_error(e).write()) };
  },
  read_path(req) {
    return pathJson(readPath(req.hex));
  },
  read_async(req) {
    const cls = { held_htlc_available: ldk.HeldHtlcAvailable, release_held_htlc: ldk.ReleaseHeldHtlc }[req.kind];
    const m = ok(cls.constructor_read(bin(req.hex)), `${req.kind}::read`);
    return { hex: hex(m.write()) };
  },
  write_async(req) {
    const cls = { held_htlc_available: ldk.HeldHtlcAvailable, release_held_htlc: ldk.ReleaseHeldHtlc }[req.kind];
    return { hex: hex(cls.constructor_new().write()) };
  },
  build_offer(req) {
    const km = keysFor(req.seed);
    const b = ldk.OfferWithDerivedMetadataBuilder.constructor_deriving_signing_pubkey(
      nodeId(km), km.as_NodeSigner().get_inbound_payment_key(), nonceOf(req.nonce));
    const o = ok(b.build(), 'OfferBuilder::build');
    return { hex: hex(o.write()), bech32: o.to_str() };
  },
  build_path(req) {
    const km = keysFor(req.seed);
    const via = (req.via || []).map((n) => ldk.MessageForwardNode.constructor_new(
      bin(n), ldk.Option_u64Z.constructor_none()));
    const p = ok(ldk.BlindedMessagePath.constructor_new(
      via, nodeId(km), messageContext(req.context, km), km.as_EntropySource()), 'BlindedMessagePath::new');
    return pathJson(p);
  },
  request_invoice(req) {
    const km = keysFor(req.seed);
    const offer = readOffer(req.offer);
    const b = owned(offer.request_invoice(km.as_NodeSigner().get_inbound_payment_key(), nonceOf(req.nonce),
      bin(req.payment_id)), ldk.InvoiceRequestWithDerivedPayerSigningPubkeyBuilder, 'Offer::request_invoice');
    const built = b.build_and_sign();
    consumed(b);
    const r = ok(built, 'InvoiceRequestBuilder::build_and_sign');
    return { hex: hex(r.write()) };
  },
  verify_invoice_request(req) {
    const km = keysFor(req.seed);
    const v = ok(readInvreq(req.hex).verify_using_metadata(km.as_NodeSigner().get_inbound_payment_key()),
      'InvoiceRequest::verify_using_metadata');
    return { offer_id: hex(v.get_offer_id().get_a()) };
  },
  respond(req) {
    // A BOLT 12 invoice for `hex` (a request for one of this node's offers),
    // paid over a one-hop blinded payment path to the node.
    const km = keysFor(req.seed);
    const signer = km.as_NodeSigner();
    const ek = signer.get_inbound_payment_key();
    const ir = readInvreq(req.hex);
    const v = ok(ir.verify_using_metadata(ek), 'InvoiceRequest::verify_using_metadata');
    const fields = ldk.InvoiceRequestFields.constructor_new(ir.payer_signing_pubkey(),
      ldk.Option_u64Z.constructor_none(), null, null);
    const context = ldk.PaymentContext.constructor_bolt12_offer(
      ldk.Bolt12OfferContext.constructor_new(v.get_offer_id(), fields));
    const tlvs = ldk.UnauthenticatedReceiveTlvs.constructor_new(bin(req.payment_secret),
      ldk.PaymentConstraints.constructor_new(req.max_cltv_expiry, 1n), context)
      .authenticate(ldk.Nonce.constructor_from_entropy_source(km.as_EntropySource()), ek);
    const path = ok(ldk.BlindedPaymentPath.constructor_one_hop(nodeId(km), tlvs, req.min_final_cltv_expiry_delta,
      km.as_EntropySource()), 'BlindedPaymentPath::one_hop');
    const b = owned(ir.respond_with_no_std([path], bin(req.payment_hash), BigInt(req.created_at)),
      ldk.InvoiceWithExplicitSigningPubkeyBuilder, 'InvoiceRequest::respond_with_no_std');
    const built = b.build();
    consumed(b);
    const unsigned = ok(built, 'InvoiceBuilder::build');
    const sig = ok(signer.sign_bolt12_invoice(unsigned), 'NodeSigner::sign_bolt12_invoice');
    // TLV 240 (signature), 64 bytes: the one record the bindings cannot add.
    const bytes = Buffer.concat([Buffer.from(unsigned.write()), Buffer.from([240, 64]), Buffer.from(sig)]);
    const inv = readInvoice(bytes.toString('hex'));
    return { hex: hex(inv.write()), unsigned: hex(unsigned.write()) };
  },
  verify_invoice(req) {
    const km = keysFor(req.seed);
    const ph = ok(readInvoice(req.hex).verify_using_payer_data(bin(req.payment_id), nonceOf(req.nonce),
      km.as_NodeSigner().get_inbound_payment_key()), 'Bolt12Invoice::verify_using_payer_data');
    return { payment_id: hex(ph) };
  },
  peel(req) {
    // `onion` is the onion_message body (path_key, len, packet): LDK's
    // OnionMessage::read, without the 2-byte message type.
    const km = keysFor(req.seed);
    const msg = ok(ldk.OnionMessage.constructor_read(bin(req.onion)), 'OnionMessage::read');
    const peeled = ok(ldk.UtilMethods.constructor_peel_onion_message(msg, km.as_NodeSigner(), logger,
      customHandler), 'peel_onion_message');
    if (peeled instanceof ldk.PeeledOnion_Forward) {
      const next = peeled._0;
      return {
        forward: true,
        next_node_id: next instanceof ldk.NextMessageHop_NodeId ? hex(next.node_id) : null,
        next_short_channel_id: next instanceof ldk.NextMessageHop_ShortChannelId
          ? next.short_channel_id.toString() : null,
        onion: hex(peeled._1.write()),
      };
    }
    const parsed = peeled._0;
    let kind; let body; let type;
    if (parsed instanceof ldk.ParsedOnionMessageContents_Offers) {
      const m = parsed.offers;
      if (m instanceof ldk.OffersMessage_InvoiceRequest) [kind, type, body] = ['invoice_request', 64, m.invoice_request.write()];
      else if (m instanceof ldk.OffersMessage_Invoice) [kind, type, body] = ['invoice', 66, m.invoice.write()];
      else [kind, type, body] = ['invoice_error', 68, m.invoice_error.write()];
    } else if (parsed instanceof ldk.ParsedOnionMessageContents_Custom) {
      type = Number(parsed.custom.tlv_type());
      [kind, body] = [`tlv_${type}`, parsed.custom.write()];
    } else {
      throw new Fail('peel_onion_message: a DNS resolver message');
    }
    body = hex(body);
    const ctx = peeled._1;
    return {
      forward: false,
      kind,
      type,
      hex: body,
      context: ctx instanceof ldk.Option_MessageContextZ_Some ? hex(ctx.some.write()) : null,
      // No reply path comes as a path object whose pointer is 0.
      reply_path: peeled._2 && peeled._2.ptr !== 0n ? pathJson(peeled._2) : null,
    };
  },
  send(req) {
    // The onion LDK's node `seed` sends over blinded path `dest`, through
    // `via` node ids first, with an optional reply path.
    const km = keysFor(req.seed);
    const path = ldk.OnionMessagePath.constructor_new((req.via || []).map(bin),
      ldk.Destination.constructor_blinded_path(readPath(req.dest)),
      ldk.Option_CVec_SocketAddressZZ.constructor_none());
    const reply = req.reply_path ? readPath(req.reply_path) : null;
    const t = ok(ldk.UtilMethods.constructor_create_onion_message(km.as_EntropySource(), km.as_NodeSigner(),
      noLookup, path, contents(req.contents), reply), 'create_onion_message');
    return { first_node_id: hex(t.get_a()), onion: hex(t.get_b().write()) };
  },
};

const lines = readline.createInterface({ input: process.stdin });
for await (const line of lines) {
  if (!line.trim()) continue;
  let req;
  try {
    req = JSON.parse(line);
    const op = ops[req.op];
    if (!op) throw new Fail(`unknown op ${req.op}`);
    out({ ok: true, ...op(req) });
  } catch (e) {
    out({ ok: false, error: e instanceof Fail ? e.message : `${e.name}: ${e.message}` });
  }
}
