// The original module's stack as a reference for sshpool-bench (benchmarks/run.sh forward):
// one SSH connection made with the `ssh2` npm package, and an HTTP/1.1 server on 127.0.0.1
// that forwards each request it receives through its own `forwardOut` (direct-tcpip)
// channel, as the original's forward() did, then relays the response.
//
// usage: node ssh2-forward.js SSHD_PORT USER IDENTITY KNOWN_HOSTS TARGET_PORT
// Prints "listening PORT" once it accepts requests; stops on SIGTERM or when the SSH
// connection ends. The host key must be the one in KNOWN_HOSTS (first line).
'use strict';
const fs = require('fs');
const http = require('http');
const { Client } = require('ssh2');

const [sshdPort, user, identity, knownHosts, targetPort] = process.argv.slice(2);
if (!targetPort) {
  console.error('usage: node ssh2-forward.js SSHD_PORT USER IDENTITY KNOWN_HOSTS TARGET_PORT');
  process.exit(2);
}
const expectedKey = fs.readFileSync(knownHosts, 'utf8').trim().split('\n')[0].split(/\s+/)[2];
const hopByHop = new Set(['connection', 'keep-alive', 'transfer-encoding', 'te', 'trailer',
  'upgrade', 'proxy-connection']);

function forward(conn, req, res, body) {
  const headers = {};
  for (const [name, value] of Object.entries(req.headers))
    if (!hopByHop.has(name)) headers[name] = value;
  headers.connection = 'close'; // one channel per request
  const upstream = http.request({
    method: req.method,
    path: req.url,
    headers,
    createConnection: (_opts, done) => {
      conn.forwardOut('127.0.0.1', 0, '127.0.0.1', Number(targetPort), done);
    },
  }, (answer) => {
    const out = {};
    for (const [name, value] of Object.entries(answer.headers))
      if (!hopByHop.has(name)) out[name] = value;
    res.writeHead(answer.statusCode, out);
    answer.pipe(res);
  });
  upstream.on('error', (err) => {
    if (!res.headersSent) res.writeHead(502, { 'content-type': 'text/plain' });
    res.end(String(err));
  });
  upstream.end(body);
}

const conn = new Client();
conn.on('ready', () => {
  const server = http.createServer({ keepAlive: true }, (req, res) => {
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => forward(conn, req, res, Buffer.concat(chunks)));
  });
  server.keepAliveTimeout = 300000;
  server.listen(0, '127.0.0.1', () => console.log('listening ' + server.address().port));
  process.on('SIGTERM', () => { server.close(); conn.end(); process.exit(0); });
});
conn.on('error', (err) => { console.error('ssh2: ' + err.message); process.exit(1); });
conn.on('close', () => process.exit(1));
conn.connect({
  host: '127.0.0.1',
  port: Number(sshdPort),
  username: user,
  privateKey: fs.readFileSync(identity),
  hostVerifier: (key) => key.toString('base64') === expectedKey,
});
