/**
 * A connection's state inside its `close` listeners (as Swoole's `onClose`
 * can read it): data, client info and topics answer; the fd no longer
 * exists and sends to it fail; after the listeners nothing is left.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import WebSocket from 'ws';
import type { Server } from '../src/index.js';
import { startServer, waitFor } from './helpers.js';

interface Member {
  name: string;
}

async function join(server: Server<Member>, name: string): Promise<{ ws: WebSocket; fd: number; port: number }> {
  const opened = waitFor<[number]>(server, 'open');
  const ws = new WebSocket(`ws://127.0.0.1:${server.port}/?name=${name}`);
  await waitFor(ws, 'open');
  const [fd] = await opened;
  return { ws, fd, port: (ws as unknown as { _socket: { localPort: number } })._socket.localPort };
}

/** What a close listener saw, and what was left once the listeners had returned. */
interface Seen {
  fd: number;
  data: Member | undefined;
  remotePort: number | undefined;
  established: boolean | undefined;
  topics: string[];
  subscribed: boolean;
  exist: boolean;
  isEstablished: boolean;
  push: boolean;
  subscribe: boolean;
  roomCount: number;
  announced: number;
  after: { data: Member | undefined; info: unknown; topics: string[]; subscribed: boolean };
}

function watchCloses(server: Server<Member>): (fd: number) => Promise<Seen> {
  const seen = new Map<number, (s: Seen) => void>();
  const results = new Map<number, Seen>();
  server.on('close', (fd) => {
    const member = server.getData(fd);
    const info = server.getClientInfo(fd);
    const partial = {
      fd,
      data: member,
      remotePort: info?.remotePort,
      established: info?.established,
      topics: server.topics(fd).sort(),
      subscribed: server.isSubscribed(fd, 'room'),
      exist: server.exist(fd),
      isEstablished: server.isEstablished(fd),
      push: server.push(fd, 'too late'),
      subscribe: server.subscribe(fd, 'elsewhere'),
      roomCount: server.subscriberCount('room'),
      // "alice left the room", to the room, without a second map of names.
      announced: server.publish('room', `${member?.name} left`),
    };
    setImmediate(() => {
      const after = {
        data: server.getData(fd),
        info: server.getClientInfo(fd),
        topics: server.topics(fd),
        subscribed: server.isSubscribed(fd, 'room'),
      };
      const result = { ...partial, after };
      results.set(fd, result);
      seen.get(fd)?.(result);
    });
  });
  return (fd) => new Promise((resolve) => (results.has(fd) ? resolve(results.get(fd)!) : seen.set(fd, resolve)));
}

describe('close listeners', () => {
  for (const [how, leave] of [
    ['the client closes', (server: Server<Member>, client: { ws: WebSocket; fd: number }) => {
      void server;
      client.ws.close();
    }],
    ['the server cuts the connection with close(fd)', (server: Server<Member>, client: { ws: WebSocket; fd: number }) => {
      server.close(client.fd);
    }],
    ['the server disconnects it', (server: Server<Member>, client: { ws: WebSocket; fd: number }) => {
      server.disconnect(client.fd, 4001, 'bye');
    }],
  ] as const) {
    test(`read the closing fd's data, client info and topics when ${how}; exist is false, sends fail, and nothing is left afterwards`, async () => {
      const server = await startServer<Member>({}, (s) => {
        s.on('handshake', (request, response) => {
          response.data = { name: request.query.get('name') ?? '?' };
        });
      });
      try {
        const closes = watchCloses(server);
        const alice = await join(server, 'alice');
        const bob = await join(server, 'bob');
        assert.ok(server.subscribe(alice.fd, 'room'));
        assert.ok(server.subscribe(alice.fd, 'lobby'));
        assert.ok(server.subscribe(bob.fd, 'room'));
        const bobHears = waitFor<[WebSocket.RawData]>(bob.ws, 'message');
        leave(server, alice);
        const seen = await closes(alice.fd);
        assert.deepEqual(seen, {
          fd: alice.fd,
          data: { name: 'alice' },
          remotePort: alice.port,
          established: false,
          topics: ['lobby', 'room'],
          subscribed: true,
          exist: false,
          isEstablished: false,
          push: false,
          subscribe: false,
          roomCount: 1,
          announced: 1,
          after: { data: undefined, info: undefined, topics: [], subscribed: false },
        });
        assert.equal(String((await bobHears)[0]), 'alice left');
        assert.equal(server.subscriberCount('lobby'), 0);
        bob.ws.close();
        await closes(bob.fd);
      } finally {
        await server.stop({ timeout: 500 });
      }
    });
  }
});
