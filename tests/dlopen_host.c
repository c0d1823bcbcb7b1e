/* A host that loads libberth with dlopen, uses it from a thread, and
 * dlcloses it while that thread is still alive (as ctypes, a plugin host or
 * a test harness may). When the thread then exits, whatever libberth left
 * behind for it (thread-exit hooks of its allocator, thread_local
 * destructors) must not run code that was unmapped: libberth is linked
 * -z nodelete, so dlclose leaves it loaded. Exit 0 when the process ends
 * normally. Usage: dlopen_host <path of libberth.so> */
#include <dlfcn.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

typedef int32_t (*selector_parse_fn)(void**, const char*, size_t);
typedef int32_t (*selector_free_fn)(void*);

static selector_parse_fn selector_parse;
static selector_free_fn selector_free;

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv = PTHREAD_COND_INITIALIZER;
static int stage = 0;  /* 1: the thread used Berth; 2: main closed the library */

static void* worker(void* arg) {
  (void)arg;
  /* Selectors allocate through mimalloc's default heap and register no
   * thread_local destructor, which would pin the library (glibc keeps a
   * library loaded while it has any): without -z nodelete this thread's exit
   * calls mimalloc's thread-exit hook in unmapped code (seen: SIGSEGV). */
  const char* text = "app in (a,b,c),tier!=x,team";
  for (int i = 0; i < 100; ++i) {
    void* selector = NULL;
    if (selector_parse(&selector, text, strlen(text)) != 0) return (void*)1;
    selector_free(selector);
  }
  pthread_mutex_lock(&mu);
  stage = 1;
  pthread_cond_broadcast(&cv);
  while (stage != 2) pthread_cond_wait(&cv, &mu);
  pthread_mutex_unlock(&mu);
  return NULL;  /* thread exit: the allocator's per-thread cleanup runs now */
}

int main(int argc, char** argv) {
  if (argc != 2) return 2;
  void* lib = dlopen(argv[1], RTLD_NOW | RTLD_LOCAL);
  if (lib == NULL) {
    fprintf(stderr, "dlopen: %s\n", dlerror());
    return 2;
  }
  selector_parse = (selector_parse_fn)dlsym(lib, "berth_selector_parse");
  selector_free = (selector_free_fn)dlsym(lib, "berth_selector_free");
  if (!selector_parse || !selector_free) return 2;
  pthread_t t;
  pthread_create(&t, NULL, worker, NULL);
  pthread_mutex_lock(&mu);
  while (stage != 1) pthread_cond_wait(&cv, &mu);
  dlclose(lib);
  void* again = dlopen(argv[1], RTLD_NOW | RTLD_NOLOAD);
  if (again == NULL) {
    fprintf(stderr, "libberth was unloaded by dlclose (not linked -z nodelete)\n");
    return 1;
  }
  dlclose(again);
  stage = 2;
  pthread_cond_broadcast(&cv);
  pthread_mutex_unlock(&mu);
  void* rc = NULL;
  pthread_join(t, &rc);
  printf("thread ended after dlclose: %s\n", rc == NULL ? "ok" : "selector_parse failed");
  return rc == NULL ? 0 : 1;
}
