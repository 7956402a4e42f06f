// A JSSE TLS client that does what a Java gRPC client's transport does before its first call:
// load a PKCS#12 keystore (client certificate) and truststore, offer ALPN h2, verify the server's
// name, handshake, then exchange the HTTP/2 connection preface and SETTINGS.
//
// The SETTINGS round trip matters: in TLS 1.3 the client's handshake completes before the server
// has checked the client certificate, so a refusal (certificate_required, bad_certificate)
// arrives as an alert on the first read, not from startHandshake().
//
// Usage: java GrpcpkiTlsClient HOST PORT TRUSTSTORE KEYSTORE|-   (store password in $STOREPASS)
// Prints "OK protocol=... alpn=... peer=..." and exits 0, or "REFUSED: ..." and exits 1.
import java.io.DataInputStream;
import java.io.FileInputStream;
import java.io.InputStream;
import java.io.OutputStream;
import java.nio.charset.StandardCharsets;
import java.security.KeyStore;
import java.security.cert.X509Certificate;
import javax.net.ssl.KeyManager;
import javax.net.ssl.KeyManagerFactory;
import javax.net.ssl.SSLContext;
import javax.net.ssl.SSLParameters;
import javax.net.ssl.SSLSocket;
import javax.net.ssl.TrustManagerFactory;

public class GrpcpkiTlsClient {
    private static KeyStore load(String path, char[] password) throws Exception {
        KeyStore store = KeyStore.getInstance("PKCS12");
        try (InputStream in = new FileInputStream(path)) {
            store.load(in, password);
        }
        return store;
    }

    public static void main(String[] args) throws Exception {
        String host = args[0];
        int port = Integer.parseInt(args[1]);
        char[] password = System.getenv("STOREPASS").toCharArray();

        TrustManagerFactory tmf = TrustManagerFactory.getInstance(TrustManagerFactory.getDefaultAlgorithm());
        tmf.init(load(args[2], password));
        KeyManager[] keyManagers = null;
        if (!args[3].equals("-")) {
            KeyManagerFactory kmf = KeyManagerFactory.getInstance(KeyManagerFactory.getDefaultAlgorithm());
            kmf.init(load(args[3], password), password);
            keyManagers = kmf.getKeyManagers();
        }
        SSLContext context = SSLContext.getInstance("TLS");
        context.init(keyManagers, tmf.getTrustManagers(), null);

        try (SSLSocket socket = (SSLSocket) context.getSocketFactory().createSocket(host, port)) {
            socket.setSoTimeout(10000);
            SSLParameters params = socket.getSSLParameters();
            params.setApplicationProtocols(new String[] {"h2"});
            params.setEndpointIdentificationAlgorithm("HTTPS");  // check the server's SANs against HOST
            socket.setSSLParameters(params);
            socket.startHandshake();

            OutputStream out = socket.getOutputStream();
            out.write("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".getBytes(StandardCharsets.US_ASCII));
            out.write(new byte[] {0, 0, 0, 4, 0, 0, 0, 0, 0});  // empty SETTINGS frame
            out.flush();
            byte[] header = new byte[9];
            new DataInputStream(socket.getInputStream()).readFully(header);
            if (header[3] != 4) {
                System.out.println("REFUSED: first HTTP/2 frame has type " + header[3] + ", not SETTINGS");
                System.exit(1);
            }
            X509Certificate peer = (X509Certificate) socket.getSession().getPeerCertificates()[0];
            System.out.println("OK protocol=" + socket.getSession().getProtocol()
                + " alpn=" + socket.getApplicationProtocol()
                + " peer=" + peer.getSubjectX500Principal().getName());
        } catch (java.io.IOException e) {
            System.out.println("REFUSED: " + e);
            System.exit(1);
        }
    }
}
