// The chat page's client: one WebSocket to the server that served this page.
// The page sends plain text; the server answers with JSON events
// ({type: 'welcome' | 'join' | 'leave' | 'message' | 'error'}), see
// examples/chat-server.ts.
'use strict';

const statusEl = document.getElementById('status');
const logEl = document.getElementById('log');
const form = document.getElementById('send-form');
const input = document.getElementById('message');
const sendButton = document.getElementById('send');
const reconnectButton = document.getElementById('reconnect');

let ws = null;
let myFd = null;

function setStatus(state, text) {
  statusEl.dataset.state = state;
  statusEl.textContent = text;
  const open = state === 'open';
  input.disabled = !open;
  sendButton.disabled = !open;
  reconnectButton.hidden = state !== 'closed';
  if (open) input.focus();
}

// Everything shown goes through textContent: a message can never inject HTML.
function addEntry(kind, text, from) {
  const li = document.createElement('li');
  li.className = kind;
  const time = document.createElement('time');
  time.textContent = new Date().toLocaleTimeString();
  li.append(time);
  if (from !== undefined) {
    li.dataset.from = String(from);
    if (from === myFd) li.classList.add('mine');
    const who = document.createElement('span');
    who.className = 'from';
    who.textContent = from === myFd ? `#${from} (you):` : `#${from}:`;
    li.append(who);
  }
  li.append(document.createTextNode(text));
  const atBottom = logEl.scrollHeight - logEl.scrollTop - logEl.clientHeight < 40;
  logEl.append(li);
  if (atBottom) logEl.scrollTop = logEl.scrollHeight;
}

function onEvent(event) {
  switch (event.type) {
    case 'welcome':
      myFd = event.fd;
      setStatus('open', `connected as #${event.fd}`);
      addEntry('system', `You are #${event.fd}. Online: ${event.online.map((fd) => `#${fd}`).join(', ')}`);
      break;
    case 'join':
      addEntry('system', `#${event.fd} joined`);
      break;
    case 'leave':
      addEntry('system', `#${event.fd} left`);
      break;
    case 'message':
      addEntry('message', event.text, event.from);
      break;
    case 'error':
      addEntry('error', `server: ${event.text}`);
      break;
    default:
      addEntry('system', `unknown event: ${JSON.stringify(event)}`);
  }
}

function connect() {
  const url = `${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}/`;
  setStatus('connecting', `connecting to ${url}…`);
  ws = new WebSocket(url);

  ws.onopen = () => {
    // The status says "connected" once the server's welcome names our fd.
    setStatus('connecting', 'connected, waiting for welcome…');
  };

  ws.onmessage = (e) => {
    if (typeof e.data !== 'string') {
      addEntry('system', 'binary message ignored');
      return;
    }
    let event;
    try {
      event = JSON.parse(e.data);
    } catch {
      addEntry('message', e.data);
      return;
    }
    onEvent(event);
  };

  ws.onerror = () => {
    addEntry('error', 'connection error');
  };

  ws.onclose = (e) => {
    myFd = null;
    const reason = e.reason ? `: ${e.reason}` : '';
    setStatus('closed', `disconnected (${e.code}${reason})`);
    addEntry('system', `connection closed with code ${e.code}${reason}`);
  };
}

form.addEventListener('submit', (e) => {
  e.preventDefault();
  const text = input.value;
  if (text.trim() === '' || ws === null || ws.readyState !== WebSocket.OPEN) return;
  ws.send(text);
  input.value = '';
  input.focus();
});

reconnectButton.addEventListener('click', connect);

connect();
