import java.io.*;
import java.net.*;
import java.nio.charset.StandardCharsets;
import java.security.KeyStore;
import java.security.cert.*;
import javax.net.ssl.*;
import com.sun.net.httpserver.HttpServer;

/** Test harness (tests/it/proxy.rs). `tls PORT KEYSTORE.p12 ROOT.pem`: a JSSE
 * server with the default trust manager and a required client certificate;
 * prints ACCEPTED or REFUSED per connection. `http PORT`: a plain HTTP server
 * on loopback answering with the X-MTLS-* headers it got. */
public class Jsse {
    public static void main(String[] a) throws Exception {
        int port = Integer.parseInt(a[1]);
        if (a[0].equals("http")) {
            HttpServer s = HttpServer.create(new InetSocketAddress("127.0.0.1", port), 0);
            s.createContext("/", ex -> {
                var h = ex.getRequestHeaders();
                byte[] b = ("role=" + h.getFirst("X-MTLS-Peer-Role") + " connection="
                        + h.getFirst("X-MTLS-Connection") + " names=" + h.getFirst("X-MTLS-Peer-Names")
                        + "\n").getBytes(StandardCharsets.UTF_8);
                ex.sendResponseHeaders(200, b.length);
                ex.getResponseBody().write(b);
                ex.close();
            });
            s.start();
            System.out.println("listening");
            return;
        }
        char[] pw = "changeit".toCharArray();
        KeyStore ks = KeyStore.getInstance("PKCS12");
        try (var in = new FileInputStream(a[2])) { ks.load(in, pw); }
        KeyManagerFactory kmf = KeyManagerFactory.getInstance(KeyManagerFactory.getDefaultAlgorithm());
        kmf.init(ks, pw);
        KeyStore ts = KeyStore.getInstance("PKCS12");
        ts.load(null, null);
        try (var in = new FileInputStream(a[3])) {
            ts.setCertificateEntry("root", CertificateFactory.getInstance("X.509").generateCertificate(in));
        }
        TrustManagerFactory tmf = TrustManagerFactory.getInstance(TrustManagerFactory.getDefaultAlgorithm());
        tmf.init(ts);
        SSLContext ctx = SSLContext.getInstance("TLS");
        ctx.init(kmf.getKeyManagers(), tmf.getTrustManagers(), null);
        SSLServerSocket ss = (SSLServerSocket) ctx.getServerSocketFactory()
                .createServerSocket(port, 50, InetAddress.getByName("127.0.0.1"));
        ss.setNeedClientAuth(true);
        System.out.println("listening");
        while (true) {
            try (SSLSocket s = (SSLSocket) ss.accept()) {
                try {
                    s.startHandshake();
                    var peer = (X509Certificate) s.getSession().getPeerCertificates()[0];
                    System.out.println("ACCEPTED " + peer.getSubjectX500Principal());
                    s.getOutputStream().write("HTTP/1.0 200 OK\r\nContent-Length: 3\r\n\r\nok\n".getBytes());
                } catch (IOException e) {
                    StringBuilder why = new StringBuilder();
                    for (Throwable t = e; t != null; t = t.getCause()) why.append(" | ").append(t.getMessage());
                    System.out.println("REFUSED" + why);
                }
            }
        }
    }
}
