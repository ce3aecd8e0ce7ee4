/*
 * send() against sendmsg() of one small buffer, on loopback TCP: what the
 * native writes pay per connection (native/write-batch.cc, SendNow). A
 * broadcast makes one such call per receiver, so a difference here is a
 * difference per delivery.
 *
 * 200 connected pairs on 127.0.0.1; each round sends 34 bytes (a 32-byte
 * binary frame) to every server-side socket, then drains the clients (not
 * timed). Prints the best of 20 rounds of 50 passes, in ns per call.
 *
 *   cc -O2 -o /tmp/send-syscall bench/micro/send-syscall.c
 *   taskset -c 1 /tmp/send-syscall
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

enum { PAIRS = 200, PASSES = 50, ROUNDS = 20, FRAME = 34 };

static double now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec + t.tv_nsec * 1e-9;
}

static double measure(const int *servers, const int *clients, int use_sendmsg) {
  char frame[FRAME];
  char sink[65536];
  memset(frame, 'x', sizeof frame);
  double best = 1e9;
  for (int round = 0; round < ROUNDS; round++) {
    double spent = 0;
    for (int pass = 0; pass < PASSES; pass++) {
      double start = now();
      for (int i = 0; i < PAIRS; i++) {
        if (use_sendmsg) {
          struct iovec iov = {frame, sizeof frame};
          struct msghdr msg = {0};
          msg.msg_iov = &iov;
          msg.msg_iovlen = 1;
          sendmsg(servers[i], &msg, MSG_DONTWAIT | MSG_NOSIGNAL);
        } else {
          send(servers[i], frame, sizeof frame, MSG_DONTWAIT | MSG_NOSIGNAL);
        }
      }
      spent += now() - start;
      for (int i = 0; i < PAIRS; i++) {
        while (read(clients[i], sink, sizeof sink) > 0) {
        }
      }
    }
    double per_call = spent / (PASSES * PAIRS) * 1e9;
    if (per_call < best) best = per_call;
  }
  return best;
}

int main(void) {
  int listener = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in addr = {0};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof addr;
  if (bind(listener, (struct sockaddr *)&addr, sizeof addr) != 0 ||
      getsockname(listener, (struct sockaddr *)&addr, &len) != 0 || listen(listener, PAIRS) != 0) {
    perror("listen");
    return 1;
  }
  int servers[PAIRS], clients[PAIRS];
  for (int i = 0; i < PAIRS; i++) {
    clients[i] = socket(AF_INET, SOCK_STREAM, 0);
    if (connect(clients[i], (struct sockaddr *)&addr, sizeof addr) != 0) {
      perror("connect");
      return 1;
    }
    servers[i] = accept(listener, NULL, NULL);
    int one = 1;
    setsockopt(servers[i], IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    fcntl(clients[i], F_SETFL, O_NONBLOCK);
  }
  for (int trial = 0; trial < 3; trial++) {
    printf("send    %.0f ns per call\n", measure(servers, clients, 0));
    printf("sendmsg %.0f ns per call\n", measure(servers, clients, 1));
  }
  return 0;
}
