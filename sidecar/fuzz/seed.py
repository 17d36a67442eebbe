#!/usr/bin/env python3
"""Builds the seed corpora of the extraction fuzz targets: ordinary files of each kind and
small versions of the abusive inputs of issue 17. The first byte of every input picks the
output cap (see fuzz_targets/check.rs): 0x80 is the default cap, 0x05 a small one; the CSV
target reads a delimiter byte before it."""
import hashlib
import os
import zlib

HERE = os.path.dirname(os.path.abspath(__file__))


def put(target, data, caps=(0x80, 0x05), head=b""):
    d = os.path.join(HERE, "corpus", target)
    os.makedirs(d, exist_ok=True)
    for cap in caps:
        body = head + bytes([cap]) + data
        with open(os.path.join(d, hashlib.sha1(body).hexdigest()), "wb") as f:
            f.write(body)


JSON = [
    b'{"a":[1,2,{"b":"x,y:{}"}],"e":{},"f":[ ],"g":"q\\"}"}',
    b'[1, 2.5e3, true, null, "\\u00e9", {"k": [[], {}]}]',
    b"[" * 200,
    b'{"a":' * 50,
    "{\"caf\u00e9\": \"cr\u00e8me\"}".encode(),
]
for j in JSON:
    put("extract_json", j)

CSV = [
    b"name,note\r\nAnn,\"hi, \"\"you\"\"\"\nBo,\"two\nlines\"\n\n",
    b"a\tb\n1\t2\n",
    b"," * 500,
    b"x|y,\\z, \"q\"r \n\n\n",
]
for c in CSV:
    for delim in (0, 1):
        # The CSV target reads the delimiter before the cap.
        put("extract_csv", c, head=bytes([delim]))

HTML = [
    b"<!DOCTYPE html><html><head><title>T &amp; C</title><style>p{color:red}</style>"
    b"<script>var x = '<p>no</p>';</script></head><body><h1>Hello&nbsp;world</h1>"
    b"<!-- hidden --><p>A &lt;b&gt; &#233;&#x20AC; <b>bold</b> text.</p>"
    b"<ul><li>one</li><li>two</li></ul><table><tr><td>c1</td><td>c2</td></tr></table>"
    b"<pre>  keep\n  spaces</pre><SCRIPT>bad()</SCRIPT>&unknown; tail</body></html>",
    b"<title>" * 200,
    b"<script><p>" * 100,
    b"<a href='x>y'>link</a> 1 < 2 <3 <!-- c --> <?pi?> <![CDATA[x]]>",
]
for h in HTML:
    put("extract_html", h)

XML = [
    b'<?xml version="1.0"?><a><b x="1">t</b><c/></a>',
    b"<r><![CDATA[<x>]]><!-- c --><?pi x?><i>&amp;</i></r>",
    b"<a>" * 200,
    b"<a><b></a>",
    b'<!DOCTYPE r [<!ENTITY e "x">]><r>&e;</r>',
]
for x in XML:
    put("extract_xml", x)


def pdf(content, xobjects=b"", extra=(), compress=False):
    """A one-page PDF drawing `content`, with a correct cross-reference table."""
    if compress:
        data = zlib.compress(content)
        stream = b"<< /Length %d /Filter /FlateDecode >>\nstream\n" % len(data) + data + b"\nendstream"
    else:
        stream = b"<< /Length %d >>\nstream\n" % len(content) + content + b"\nendstream"
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R "
        b"/Resources << /Font << /F1 5 0 R >> /XObject << " + xobjects + b" >> >> >>",
        stream,
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>",
    ] + list(extra)
    out = b"%PDF-1.4\n"
    offsets = []
    for i, o in enumerate(objects):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % (i + 1) + o + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    for off in offsets:
        out += b"%010d 00000 n \n" % off
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref)
    return out


def form(content, resources=b""):
    return (b"<< /Type /XObject /Subtype /Form /BBox [0 0 10 10] /Resources << " + resources
            + b" >> /Length %d >>\nstream\n" % len(content) + content + b"\nendstream")


TEXT = b"BT /F1 24 Tf 72 700 Td (Hello PDF world) Tj ET"
put("extract_pdf", pdf(TEXT))
put("extract_pdf", pdf(TEXT, compress=True))
put("extract_pdf", pdf(b"q 1 0 0 1 0 0 cm 0 0 10 10 re f Q " + TEXT + b" /X Do", b"/X 6 0 R",
                       [form(b"BT /F1 12 Tf 0 0 Td (inside) Tj ET", b"/Font << /F1 5 0 R >>")]))
put("extract_pdf", pdf(b"/X Do", b"/X 6 0 R", [form(b"/X Do", b"/XObject << /X 6 0 R >>")]))
put("extract_pdf", pdf(b"[" * 50 + b"] TJ"))
