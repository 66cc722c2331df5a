/* Thread cancellation as native (musl decides from the interrupted
 * instruction pointer whether the cancel signal hit a cancellation point;
 * glibc from its own state): a thread cancelled while blocked in read()
 * and one cancelled in pthread_cond_wait (a futex wait) both end, as
 * PTHREAD_CANCELED, after running their cleanup handlers. 20 rounds each;
 * a hang is cut off by the alarm. */
#include <pthread.h>
#include <stdio.h>
#include <unistd.h>

static int p[2];
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv = PTHREAD_COND_INITIALIZER;
static volatile int cleaned;

static void cleanup_read(void *a) { (void)a; cleaned = 1; }
static void cleanup_cond(void *a) { (void)a; cleaned = 1; pthread_mutex_unlock(&mu); }

static void *in_read(void *a)
{
    char c;
    pthread_cleanup_push(cleanup_read, NULL);
    read(p[0], &c, 1);
    pthread_cleanup_pop(0);
    return a;
}

static void *in_cond_wait(void *a)
{
    pthread_mutex_lock(&mu);
    pthread_cleanup_push(cleanup_cond, NULL);
    for (;;)
        pthread_cond_wait(&cv, &mu);
    pthread_cleanup_pop(0);
    return a;
}

static int rounds(void *(*fn)(void *))
{
    int ok = 0;
    for (int i = 0; i < 20; i++) {
        pthread_t th;
        cleaned = 0;
        pthread_create(&th, NULL, fn, NULL);
        usleep(10000);
        pthread_cancel(th);
        void *r;
        pthread_join(th, &r);
        ok += r == PTHREAD_CANCELED && cleaned;
    }
    return ok;
}

int main(void)
{
    setvbuf(stdout, NULL, _IONBF, 0);
    alarm(60);
    pipe(p);
    char c;
    write(p[1], "x", 1);
    read(p[0], &c, 1); /* a cancellable call while single-threaded */
    printf("cancelled in read: %d/20\n", rounds(in_read));
    printf("cancelled in pthread_cond_wait: %d/20\n", rounds(in_cond_wait));
    return 0;
}
