/* POSIX threads: each thread has its own TLS (FS base), makes syscalls,
 * contends on a mutex and a condition variable; the main thread joins all. */
#include <pthread.h>
#include <stdio.h>
#include <unistd.h>

#define N 4
static __thread long mine = -1;
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cond = PTHREAD_COND_INITIALIZER;
static long total;
static int ready;

static void *work(void *arg)
{
    long id = (long)arg;
    mine = id * 1000;
    long sum = 0;
    for (long i = 1; i <= 10000; i++) {
        sum += i;
        if (i % 2500 == 0)
            getppid(); /* a trapped syscall from this thread */
    }
    pthread_mutex_lock(&lock);
    total += sum;
    ready++;
    pthread_cond_broadcast(&cond);
    pthread_mutex_unlock(&lock);
    return (void *)(mine + id);
}

static void *tiny(void *arg)
{
    getppid();
    return arg;
}

int main(void)
{
    pthread_t t[N];
    mine = 7;
    for (long i = 0; i < N; i++)
        if (pthread_create(&t[i], NULL, work, (void *)i) != 0) { printf("pthread_create failed\n"); return 1; }
    pthread_mutex_lock(&lock);
    while (ready < N)
        pthread_cond_wait(&cond, &lock);
    pthread_mutex_unlock(&lock);
    long check = 0;
    for (int i = 0; i < N; i++) {
        void *ret;
        pthread_join(t[i], &ret);
        check += (long)ret;
    }
    /* Many short-lived threads: each one's exit must release its resources. */
    long churn = 0;
    for (long i = 0; i < 500; i++) {
        pthread_t c;
        void *r;
        if (pthread_create(&c, NULL, tiny, (void *)1) != 0) break;
        pthread_join(c, &r);
        churn += (long)r;
    }
    printf("total=%ld tls-results=%ld main-tls=%ld churn=%ld\n", total, check, mine, churn);
    return 0;
}
